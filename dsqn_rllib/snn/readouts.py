"""Readouts: how a DSQN turns T steps of its output layer into one Q-value per action.

Membrane readouts (Chen et al. 2022) take a statistic of the LI membrane ``V`` of shape
``[T, B, num_actions]``:

* ``last-mem``: Q = V_T
* ``max-mem``:  Q = max_t V_t   (the paper's best, the default)
* ``mean-mem``: Q = mean_t V_t

``firing-rate`` (Liu et al. 2022) has no LI layer: Q = W · mean_t S_t + b, a linear map of the
mean firing rate of the last (512-unit) spiking layer.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from torch import Tensor


class Readout(str, Enum):
    """The readouts a spiking Q-network offers. Values are what configs and the CLI accept."""

    LAST_MEM = "last-mem"
    MAX_MEM = "max-mem"
    MEAN_MEM = "mean-mem"
    FIRING_RATE = "firing-rate"

    @property
    def reads_membrane(self) -> bool:
        """Whether the readout is a statistic of an LI membrane (else of spike counts)."""
        return self is not Readout.FIRING_RATE


def parse_readout(name: str | Readout) -> Readout:
    """``"max-mem"`` → ``Readout.MAX_MEM``; an unknown name is a one-line ``ValueError``."""
    try:
        return Readout(name)
    except ValueError:
        allowed = ", ".join(r.value for r in Readout)
        raise ValueError(f"unknown readout {name!r}; allowed: {allowed}") from None


def last_mem(v_seq: Tensor) -> Tensor:
    """Q = V_T of a ``[T, B, A]`` membrane trace."""
    return v_seq[-1]


def max_mem(v_seq: Tensor) -> Tensor:
    """Q = max over t of V_t (gradient flows to the step that attains the max)."""
    return v_seq.amax(dim=0)


def mean_mem(v_seq: Tensor) -> Tensor:
    """Q = mean over t of V_t."""
    return v_seq.mean(dim=0)


MEMBRANE_READOUTS: dict[Readout, Callable[[Tensor], Tensor]] = {
    Readout.LAST_MEM: last_mem,
    Readout.MAX_MEM: max_mem,
    Readout.MEAN_MEM: mean_mem,
}


def firing_rate(s_seq: Tensor) -> Tensor:
    """Mean over t of a ``[T, B, N]`` spike train: spikes per neuron per step."""
    return s_seq.mean(dim=0)
