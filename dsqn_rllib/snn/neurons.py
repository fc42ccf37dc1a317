"""Spiking neurons of DSQN (Chen et al. 2022): LIF and LI, their surrogate gradients.

Discrete time t = 1..T, state starts at ``V_0 = V_reset`` on every call (no hidden state):

    charge:  H_t = V_{t-1} + (1/τ) · ( -(V_{t-1} - V_reset) + X_t )
    fire:    S_t = Θ(H_t - V_th),   Θ(x) = 1 if x ≥ 0 else 0
    reset:   V_t = H_t · (1 - S_t) + V_reset · S_t          (hard reset)

LI (the non-spiking readout neuron) is the charge step alone: ``V_t = H_t``.

The spike's derivative is replaced in the backward pass by a surrogate (``SURROGATES``);
the reset is detached from the graph by default (the authors' code, ``detach_reset=True``).

Two execution styles share these definitions:

* ``lif_step`` / ``li_step``: one time step, plain autograd (the readable reference).
* ``lif_multistep`` / ``li_multistep``: all T steps of a ``[T, N, ...]`` input at once. The LIF
  one is a single autograd node whose backward is the hand-written reverse recurrence, which is
  what makes the T-folded path cheap: one node instead of ~6·T small ones per layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

import torch
from torch import Tensor


def heaviside(x: Tensor) -> Tensor:
    """Θ(x) with Θ(0) = 1, in the dtype of ``x``."""
    return (x >= 0).to(x.dtype)


# --------------------------------------------------------------------------------------------
# Surrogate gradients: Heaviside forward, a smooth stand-in for its derivative backward.
# Each is given as the derivative function g(x, α) so the fused LIF backward can reuse it.
# --------------------------------------------------------------------------------------------


def atan_grad(x: Tensor, alpha: float) -> Tensor:
    """ATan surrogate (SpikingJelly): dΘ/dx ≈ (α/2) / (1 + (π α x / 2)²)."""
    scaled = x * (math.pi / 2 * alpha)
    return scaled.mul_(scaled).add_(1).reciprocal_().mul_(alpha / 2)


def sigmoid_grad(x: Tensor, alpha: float) -> Tensor:
    """Sigmoid surrogate: dΘ/dx ≈ α · σ(αx) · (1 - σ(αx))."""
    sig = torch.sigmoid(alpha * x)
    return alpha * sig * (1 - sig)


def rectangular_grad(x: Tensor, alpha: float) -> Tensor:
    """Rectangular surrogate (Wu et al. 2018): dΘ/dx ≈ α · 1[|x| < 1/(2α)] (unit area)."""
    return alpha * (x.abs() < 1 / (2 * alpha)).to(x.dtype)


class Surrogate(str, Enum):
    """Named surrogate gradients for Θ. Values are what configs and the CLI accept."""

    ATAN = "atan"
    SIGMOID = "sigmoid"
    RECTANGULAR = "rectangular"


SurrogateGrad = Callable[[Tensor, float], Tensor]

SURROGATES: dict[Surrogate, SurrogateGrad] = {
    Surrogate.ATAN: atan_grad,
    Surrogate.SIGMOID: sigmoid_grad,
    Surrogate.RECTANGULAR: rectangular_grad,
}

# α of each surrogate when none is given: ATan α = 2 is the authors' default; sigmoid α = 4 and
# rectangular α = 1 (unit width) are SpikingJelly's / Wu et al.'s usual choices.
DEFAULT_SURROGATE_ALPHA: dict[Surrogate, float] = {
    Surrogate.ATAN: 2.0,
    Surrogate.SIGMOID: 4.0,
    Surrogate.RECTANGULAR: 1.0,
}


def parse_surrogate(name: str | Surrogate) -> Surrogate:
    """``"atan"`` → ``Surrogate.ATAN``; an unknown name is a one-line ``ValueError``."""
    try:
        return Surrogate(name)
    except ValueError:
        allowed = ", ".join(s.value for s in Surrogate)
        raise ValueError(f"unknown surrogate {name!r}; allowed: {allowed}") from None


class _SpikeFunction(torch.autograd.Function):
    """S = Θ(x) forward; dS/dx = surrogate(x, α) backward."""

    @staticmethod
    def forward(ctx, x: Tensor, surrogate: SurrogateGrad, alpha: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        ctx.alpha = alpha
        return heaviside(x)

    @staticmethod
    def backward(ctx, grad_spike: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_spike * ctx.surrogate(x, ctx.alpha), None, None


def spike(x: Tensor, surrogate: Surrogate = Surrogate.ATAN, alpha: float | None = None) -> Tensor:
    """Θ(x) with a surrogate gradient (``alpha`` defaults to the surrogate's usual value)."""
    a = DEFAULT_SURROGATE_ALPHA[surrogate] if alpha is None else alpha
    return _SpikeFunction.apply(x, SURROGATES[surrogate], a)


# --------------------------------------------------------------------------------------------
# Neuron parameters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NeuronParams:
    """Parameters shared by every LIF/LI layer of a network (defaults: the authors' code)."""

    tau: float = 2.0
    """Membrane time constant τ. τ ≥ 1, else the charge step overshoots V_reset."""
    v_threshold: float = 1.0
    """Firing threshold V_th (must exceed V_reset)."""
    v_reset: float = 0.0
    """Reset and resting potential V_reset; also the initial membrane V_0."""
    surrogate: Surrogate = Surrogate.ATAN
    """Surrogate derivative of Θ used in the backward pass."""
    surrogate_alpha: float | None = None
    """Sharpness α of the surrogate; ``None`` takes ``DEFAULT_SURROGATE_ALPHA`` (ATan: 2)."""
    detach_reset: bool = True
    """Treat the reset's S_t as a constant in the backward pass (the authors' choice)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "surrogate", parse_surrogate(self.surrogate))
        if not (isinstance(self.tau, (int, float)) and self.tau >= 1.0):
            raise ValueError(
                f"tau must be a number >= 1 (the update overshoots below), got {self.tau!r}"
            )
        if not self.v_threshold > self.v_reset:
            raise ValueError(
                f"v_threshold must be greater than v_reset, got v_threshold={self.v_threshold!r}"
                f" <= v_reset={self.v_reset!r}"
            )
        if self.surrogate_alpha is not None and not self.surrogate_alpha > 0:
            raise ValueError(f"surrogate_alpha must be > 0, got {self.surrogate_alpha!r}")

    @property
    def alpha(self) -> float:
        """The surrogate's α in force."""
        if self.surrogate_alpha is None:
            return DEFAULT_SURROGATE_ALPHA[self.surrogate]
        return self.surrogate_alpha

    @property
    def decay(self) -> float:
        """1 - 1/τ: the share of V_{t-1} kept by the charge step."""
        return 1.0 - 1.0 / self.tau


# --------------------------------------------------------------------------------------------
# Reference path: one time step, plain autograd.
# --------------------------------------------------------------------------------------------


def charge(v: Tensor, x: Tensor, p: NeuronParams) -> Tensor:
    """H_t = V_{t-1} + (1/τ)(-(V_{t-1} - V_reset) + X_t)."""
    return v + (x - (v - p.v_reset)) / p.tau


def lif_step(x: Tensor, v: Tensor, p: NeuronParams) -> tuple[Tensor, Tensor]:
    """One LIF step: charge, fire, hard reset. Returns ``(S_t, V_t)``."""
    h = charge(v, x, p)
    s = spike(h - p.v_threshold, p.surrogate, p.alpha)
    s_reset = s.detach() if p.detach_reset else s
    v_next = h * (1 - s_reset) + p.v_reset * s_reset
    return s, v_next


def li_step(x: Tensor, v: Tensor, p: NeuronParams) -> Tensor:
    """One LI step (the readout neuron): V_t = H_t."""
    return charge(v, x, p)


def initial_membrane(like: Tensor, p: NeuronParams) -> Tensor:
    """V_0 = V_reset, shaped like one time step of the input."""
    return torch.full_like(like, p.v_reset)


# --------------------------------------------------------------------------------------------
# Fast path: all T steps at once on a [T, N, ...] tensor.
# --------------------------------------------------------------------------------------------


class LIFState(NamedTuple):
    """What the fused LIF keeps for its backward pass: pre-spike membranes and spikes."""

    h_seq: Tensor
    s_seq: Tensor


def _lif_forward_loop(x: Tensor, p: NeuronParams, constant_steps: int | None) -> LIFState:
    """Charge-fire-reset over T steps; ``x`` is ``[T, N, ...]``, or ``[N, ...]`` held for
    ``constant_steps`` steps (a constant input current: the DSQN encoder layer).

    Written for the CPU's sake as three whole-tensor ops per step (charge, fire, reset), each
    writing into a preallocated buffer: no allocation inside the loop.
    """
    T = x.shape[0] if constant_steps is None else constant_steps
    step_shape = x.shape[1:] if constant_steps is None else x.shape
    drive = x / p.tau  # the input part of the charge step, (1/τ)(X_t + V_reset)
    if p.v_reset != 0.0:
        drive = drive + p.v_reset / p.tau
    h_seq = x.new_empty((T, *step_shape))
    s_seq = x.new_empty((T, *step_shape))
    v = x.new_full(step_shape, p.v_reset)
    v_reset = x.new_tensor(p.v_reset)
    for t in range(T):
        h = torch.add(
            drive if constant_steps is not None else drive[t], v, alpha=p.decay, out=h_seq[t]
        )
        s = torch.ge(h, p.v_threshold, out=s_seq[t])  # Θ(H - V_th), Θ(0) = 1, as floats
        # Hard reset V = H (1 - S) + V_reset S, computed so that V is exactly V_reset on a spike.
        if p.v_reset == 0.0:
            torch.addcmul(h, h, s, value=-1.0, out=v)
        else:
            torch.where(s.bool(), v_reset, h, out=v)
    return LIFState(h_seq, s_seq)


class _LIFMultiStep(torch.autograd.Function):
    """LIF over T steps as one autograd node with a hand-written reverse recurrence.

    Backward, with g_t = surrogate(H_t - V_th), dV_t/dH_t = (1 - S_t) [+ (V_reset - H_t) g_t
    when the reset is attached], and dH_{t+1}/dV_t = 1 - 1/τ:

        dL/dH_t = dL/dS_t · g_t + dL/dH_{t+1} · (1 - 1/τ) · dV_t/dH_t
        dL/dX_t = dL/dH_t / τ     (summed over t for a constant input)

    Everything but the recurrence itself is computed for all t at once, so the loop is one
    fused multiply-add per step.
    """

    @staticmethod
    def forward(ctx, x: Tensor, p: NeuronParams, constant_steps: int | None) -> Tensor:  # type: ignore[override]
        state = _lif_forward_loop(x, p, constant_steps)
        ctx.save_for_backward(state.h_seq, state.s_seq)
        ctx.params = p
        ctx.constant_steps = constant_steps
        return state.s_seq

    @staticmethod
    def backward(ctx, grad_s_seq: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        h_seq, s_seq = ctx.saved_tensors
        p: NeuronParams = ctx.params
        surrogate_seq = SURROGATES[p.surrogate](h_seq - p.v_threshold, p.alpha)
        # dV_t/dH_t · dH_{t+1}/dV_t = (1 - S_t)(1 - 1/τ) with the reset detached.
        carry_seq = torch.sub(p.decay, s_seq, alpha=p.decay)
        if not p.detach_reset:
            carry_seq.addcmul_(p.v_reset - h_seq, surrogate_seq, value=p.decay)
        grad_h_seq = grad_s_seq * surrogate_seq  # the direct part, dL/dS_t · g_t
        for t in range(grad_h_seq.shape[0] - 2, -1, -1):
            torch.addcmul(grad_h_seq[t], grad_h_seq[t + 1], carry_seq[t], out=grad_h_seq[t])
        if ctx.constant_steps is not None:
            return grad_h_seq.sum(0).div_(p.tau), None, None
        return grad_h_seq.div_(p.tau), None, None


def lif_multistep(x_seq: Tensor, p: NeuronParams) -> Tensor:
    """Spikes ``[T, N, ...]`` of a LIF layer driven by currents ``x_seq`` of the same shape."""
    if not (torch.is_grad_enabled() and x_seq.requires_grad):
        return _lif_forward_loop(x_seq, p, None).s_seq
    return _LIFMultiStep.apply(x_seq, p, None)


def lif_constant_input(x: Tensor, T: int, p: NeuronParams) -> Tensor:
    """Spikes ``[T, N, ...]`` of a LIF layer driven by the same current ``x`` at every step."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        return _lif_forward_loop(x, p, T).s_seq
    return _LIFMultiStep.apply(x, p, T)


def li_decay_matrix(T: int, p: NeuronParams, *, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The LI recurrence unrolled: V_t - V_reset = Σ_{k≤t} (1/τ)(1-1/τ)^{t-k} X_k.

    Returned as a lower-triangular ``[T, T]`` matrix so all T membranes are one matmul.
    """
    t = torch.arange(T, dtype=torch.float64)
    power = (t[:, None] - t[None, :]).clamp(min=0)
    weights = torch.where(t[:, None] >= t[None, :], p.decay**power / p.tau, torch.zeros(()))
    return weights.to(dtype=dtype, device=device)


def li_multistep(x_seq: Tensor, p: NeuronParams) -> Tensor:
    """Membranes ``[T, N, ...]`` of a LI layer driven by ``x_seq`` (linear, so one matmul)."""
    T = x_seq.shape[0]
    weights = li_decay_matrix(T, p, dtype=x_seq.dtype, device=x_seq.device)
    flat = x_seq.reshape(T, -1)
    return (weights @ flat).reshape(x_seq.shape) + p.v_reset
