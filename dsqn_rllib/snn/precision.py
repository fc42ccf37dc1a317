"""Numeric precision of a Q-network: fp32, or bf16 in the learner update with fp32 decisions.

A spiking network's greedy action is fragile under rounding: on a DSQN whose every layer fires
(real Pong frames), a plain bf16 forward picks the fp32 action on only 38-51% of frames (62%
with the first conv in fp32; fp32 and fp64 agree on 97-100%). Spikes are exact in bf16, but
weights and currents are rounded, membranes near V_th cross or miss it, and the flips cascade
through the layers. A forward with fp32 outputs from bf16 inputs (oneDNN's fpmath mode, or
hi + lo weight splits) would keep them, but on a CPU it is no faster than fp32. So
``Precision.BF16`` splits the work by what it is for:

* **Decisions in fp32.** Every forward pass outside a learner update (acting on the env
  runners, evaluation, spike statistics, threshold-aware init) runs in fp32: spikes, Q-values
  and greedy actions are those of fp32, bit for bit.
* **Learning in bf16.** Inside a learner update (a forward that records a gradient, or any
  forward under ``learner_update()``, which the learner wraps around the target network's)
  the hidden convs and linears run in bf16 with fp32 accumulation (oneDNN's AMX kernels on a
  CPU that has them, tensor cores on CUDA), forward and backward; their inputs are spikes
  (exact in bf16). The LIF layers between them compute in fp32 but take bf16 currents and
  gradients and give bf16 spikes (the fused CPU kernels widen and round as they read and
  write: no conversion passes over the ``[T, N]`` tensors). The encoder conv (real-valued
  frames, computed once, not T times), the head, LIF membranes, readouts, the loss and Adam
  stay fp32, on fp32 master weights.

The update therefore fits the Q-values of the bf16 network, which differs from the acting
fp32 one on near-threshold spikes; tests/test_precision.py checks that learning is unharmed
(the DSQN-learns fits on real Pong frames, CartPole) and measures how far the two forwards
agree. ``Precision.AUTO`` is bf16 where it was measured faster and fp32 elsewhere.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Iterator
from enum import Enum

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class Precision(str, Enum):
    """How a network's learner update computes. Values are what configs and the CLI accept."""

    FP32 = "fp32"
    """Everything in float32 (the paper's)."""
    BF16 = "bf16"
    """Acting in fp32 (the decisions of fp32); the learner update's hidden layers in bf16."""
    AUTO = "auto"
    """bf16 on hardware where it was measured faster, fp32 elsewhere."""


def parse_precision(name: str | Precision) -> Precision:
    """``"bf16"`` → ``Precision.BF16``; an unknown name is a one-line ``ValueError``."""
    try:
        return Precision(name)
    except ValueError:
        allowed = ", ".join(p.value for p in Precision)
        raise ValueError(f"unknown precision {name!r}; allowed: {allowed}") from None


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True on a CPU with AMX-BF16 (oneDNN's bf16 convs there are 2-5x its fp32 ones)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        pass
    return False


def resolve_precision(precision: Precision, device: torch.device) -> Precision:
    """``AUTO`` → bf16 on a CUDA device with bf16 tensor cores (compute capability >= 8) or
    a CPU with AMX-BF16, else fp32; other values stay as asked."""
    if precision is not Precision.AUTO:
        return precision
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return Precision.BF16 if major >= 8 else Precision.FP32
    if device.type == "cpu" and cpu_has_fast_bf16():
        return Precision.BF16
    return Precision.FP32


_IN_LEARNER_UPDATE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "dsqn_in_learner_update", default=False
)


@contextlib.contextmanager
def learner_update() -> Iterator[None]:
    """Marks forwards as a learner update's (the target network's, under no_grad): under
    ``Precision.BF16`` they compute in bf16 like the online network's. Acting never enters it.
    """
    token = _IN_LEARNER_UPDATE.set(True)
    try:
        yield
    finally:
        _IN_LEARNER_UPDATE.reset(token)


def in_learner_update() -> bool:
    """A forward that records a gradient, or one inside ``learner_update()``."""
    return torch.is_grad_enabled() or _IN_LEARNER_UPDATE.get()


def _bf16(x: Tensor) -> Tensor:
    """``x`` in bf16, in its own memory layout (a channels-last map stays channels-last)."""
    return x.to(torch.bfloat16, memory_format=torch.preserve_format)


def runs_in_bf16(layer: nn.Module, precision: Precision, bf16_ok: bool = True) -> bool:
    """Whether ``apply_layer`` runs ``layer`` in bf16 in the current forward: BF16 precision,
    ``bf16_ok``, a learner update, and a zero-padded conv or a linear layer."""
    if precision is not Precision.BF16 or not bf16_ok or not in_learner_update():
        return False
    if isinstance(layer, nn.Conv2d):
        return layer.padding_mode == "zeros"
    return isinstance(layer, nn.Linear)


def apply_layer(
    layer: nn.Module,
    x: Tensor,
    precision: Precision,
    bf16_ok: bool = True,
    float32_output: bool = True,
) -> Tensor:
    """``layer(x)``; in bf16 (gradients back to the fp32 weights) when ``precision`` is BF16,
    ``bf16_ok`` (a layer whose input is spikes) and the call is part of a learner update,
    its result widened to fp32 unless ``float32_output`` is False (a LIF layer that reads
    bf16 currents itself, as the fused CPU kernels do). Otherwise the module is called as
    usual, hooks and all."""
    if not runs_in_bf16(layer, precision, bf16_ok):
        return layer(x)
    if isinstance(layer, nn.Conv2d):
        bias = None if layer.bias is None else _bf16(layer.bias)
        y = F.conv2d(
            _bf16(x),
            _bf16(layer.weight),
            bias,
            layer.stride,
            layer.padding,
            layer.dilation,
            layer.groups,
        )
    else:
        bias = None if layer.bias is None else _bf16(layer.bias)
        y = F.linear(_bf16(x), _bf16(layer.weight), bias)
    if not float32_output:
        return y
    return y.to(torch.float32, memory_format=torch.preserve_format)
