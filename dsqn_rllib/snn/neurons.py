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
  what makes the T-folded path cheap: one node instead of ~6·T small ones per layer. On a CPU
  its loops run as fused kernels (``dsqn_rllib.snn.lif_kernels``), elsewhere as torch ops.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

import torch
from torch import Tensor

from dsqn_rllib.snn import lif_kernels


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


def steps_like(step: Tensor, T: int, dtype: torch.dtype | None = None) -> Tensor:
    """An empty ``[T, *step.shape]`` tensor (of ``dtype``, default ``step``'s) whose every
    ``[t]`` has the memory layout of ``step``: a channels-last feature map stays
    channels-last, so the next conv reads the T-folded spikes (``flatten(0, 1)``) without a
    layout conversion."""
    dtype = step.dtype if dtype is None else dtype
    if (
        step.dim() == 4
        and not step.is_contiguous()
        and step.is_contiguous(memory_format=torch.channels_last)
    ):
        n, c, h, w = step.shape
        folded = torch.empty(
            (T * n, c, h, w),
            dtype=dtype,
            device=step.device,
            memory_format=torch.channels_last,
        )
        return folded.unflatten(0, (T, n))
    return step.new_empty((T, *step.shape), dtype=dtype)


# Elements of one time step handled per pass: the forward loop's working set (drive, V, H_t,
# S_t of one chunk: 4 x 256 KiB) and the backward's ([T, chunk] gradient, carry, H, S, dL/dS:
# ~5 x 512 KiB at T = 8) stay in a core's L2, so each element of the [T, N] tensors crosses
# the memory bus about once per pass instead of once per op. These layers are memory-bound on
# a CPU: at batch 128, T = 8 the encoder's LIF moves 50 MB tensors. Measured on 2 x86 cores.
FORWARD_CHUNK = 1 << 16
BACKWARD_CHUNK = 1 << 14


def _flat_steps(t: Tensor) -> Tensor:
    """A ``[T, ...]`` tensor whose every step is one dense block (``steps_like``) as a
    ``[T, M]`` view; anything else is copied into such a block first."""
    step_numel = t[0].numel()
    dense = t[0].is_contiguous() or t[0].is_contiguous(memory_format=torch.channels_last)
    if not (dense and t.stride(0) == step_numel):
        t = t.contiguous()
    return t.as_strided((t.shape[0], step_numel), (step_numel, 1), t.storage_offset())


def _flat_step(t: Tensor) -> Tensor:
    """One step ``[N, ...]`` as a flat ``[M]`` view in its memory order (see ``_flat_steps``)."""
    if not (t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last)):
        t = t.contiguous()
    return t.as_strided((t.numel(),), (1,), t.storage_offset())


def _lif_forward_loop(
    x: Tensor,
    p: NeuronParams,
    constant_steps: int | None,
    keep_membranes: bool = True,
    spike_dtype: torch.dtype | None = None,
    fused: bool = False,
) -> LIFState:
    """Charge-fire-reset over T steps; ``x`` is ``[T, N, ...]``, or ``[N, ...]`` held for
    ``constant_steps`` steps (a constant input current: the DSQN encoder layer).

    Three whole-chunk ops per step (charge, fire, reset) into preallocated buffers, over
    ``FORWARD_CHUNK`` neurons at a time (see there). Spikes (and H) are written in ``x``'s
    memory layout. Without ``keep_membranes`` (no backward to come) H is never stored; the
    returned ``h_seq`` is then an empty placeholder.
    """
    constant = constant_steps is not None
    step = x if constant else x[0]
    T = constant_steps if constant_steps is not None else x.shape[0]
    # Spikes in the dtype asked for (bf16 for a bf16 layer after: exact, see
    # snn.precision), membranes in the compute dtype (float32 for bf16 currents).
    s_seq = steps_like(step, T, spike_dtype)
    compute = torch.float32 if x.dtype == torch.bfloat16 else x.dtype
    h_seq = steps_like(step, T, compute) if keep_membranes else step.new_empty(0)
    if constant:
        x = x.contiguous(memory_format=_layout_of(step)) if step.dim() == 4 else x
    x_flat = _flat_step(x) if constant else _flat_steps(x)
    s_flat = _flat_steps(s_seq)
    h_flat = _flat_steps(h_seq) if keep_membranes else None
    if fused:  # lif_kernels computes this layer (see _fused)
        x_rows = x_flat.unsqueeze(0) if constant else x_flat
        lif_kernels.forward(x_rows, s_flat, h_flat, p.tau, p.decay, p.v_threshold, p.v_reset)
        return LIFState(h_seq, s_seq)
    m = s_flat.shape[1]
    width = min(m, FORWARD_CHUNK)
    drive_buf = x.new_empty(width if constant else (T, width))
    v = x.new_empty(width)
    h_buf = x.new_empty(width)
    v_reset = x.new_tensor(p.v_reset)
    for start in range(0, m, FORWARD_CHUNK):
        cols = slice(start, min(m, start + FORWARD_CHUNK))
        w = cols.stop - cols.start
        # The input part of the charge step, (1/τ)(X_t + V_reset).
        chunk = x_flat[cols] if constant else x_flat[:, cols]
        drive = torch.div(chunk, p.tau, out=drive_buf[..., :w])
        if p.v_reset != 0.0:
            drive.add_(p.v_reset / p.tau)
        v_w = v[:w].fill_(p.v_reset)
        for t in range(T):
            h_out = h_flat[t, cols] if h_flat is not None else h_buf[:w]
            h = torch.add(drive if constant else drive[t], v_w, alpha=p.decay, out=h_out)
            s = torch.ge(h, p.v_threshold, out=s_flat[t, cols])  # Θ(H - V_th), Θ(0) = 1
            # Hard reset V = H (1 - S) + V_reset S, computed so that V is exactly V_reset on
            # a spike.
            if p.v_reset == 0.0:
                torch.addcmul(h, h, s, value=-1.0, out=v_w)
            else:
                torch.where(s.bool(), v_reset, h, out=v_w)
    return LIFState(h_seq, s_seq)


def _fused(x: Tensor, p: NeuronParams) -> bool:
    """Whether ``dsqn_rllib.snn.lif_kernels`` computes this layer (CPU, ATan, detached reset)."""
    return lif_kernels.supports(x, p.surrogate is Surrogate.ATAN, p.detach_reset)


def _layout_of(step: Tensor) -> torch.memory_format:
    if not step.is_contiguous() and step.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _direct_grad_over_tau(grad_s: Tensor, h: Tensor, p: NeuronParams, out: Tensor) -> Tensor:
    """dL/dS_t · g(H_t - V_th) / τ into ``out`` (which may not alias ``grad_s`` or ``h``).

    For ATan, g(u)/τ = (α/2) / (τ (1 + (πα/2 · u)²)) = 1 / (a + (k u)²) with a = 2τ/α and
    k = (πα/2)·√a, so the whole product is three ops (scale-shift, square-add, divide) in
    ``out`` instead of eight.
    """
    if p.surrogate is Surrogate.ATAN:
        a = 2.0 * p.tau / p.alpha
        k = math.pi / 2 * p.alpha * math.sqrt(a)
        ku = torch.add(h.new_tensor(-k * p.v_threshold), h, alpha=k, out=out)
        denominator = torch.addcmul(h.new_tensor(a), ku, ku, out=ku)
        return torch.div(grad_s, denominator, out=denominator)
    surrogate = SURROGATES[p.surrogate](h - p.v_threshold, p.alpha)
    return torch.mul(surrogate, grad_s, out=out).div_(p.tau)


def _lif_backward(
    grad_s_seq: Tensor,
    h_seq: Tensor,
    s_seq: Tensor,
    p: NeuronParams,
    constant: bool,
    x_dtype: torch.dtype | None = None,
    fused: bool = False,
) -> Tensor:
    """dL/dX (in ``x_dtype``, default the membranes') of the LIF layer (see
    ``_LIFMultiStep``), ``BACKWARD_CHUNK`` neurons at a time: each chunk's ``[T, chunk]``
    gradient is computed, run back through time and (for a constant input) summed over t
    while it is in cache. Gradients and spikes of another dtype than the membranes (bf16)
    reach this only on the fused kernels' path; ``fused`` says whether the forward took it."""
    if grad_s_seq.stride() != h_seq.stride():
        # e.g. a flatten's NCHW gradient against channels-last spikes: one copy here instead
        # of every op below walking two layouts.
        grad_s_seq = torch.empty_like(h_seq, dtype=grad_s_seq.dtype).copy_(grad_s_seq)
    T = h_seq.shape[0]
    g_flat, h_flat, s_flat = _flat_steps(grad_s_seq), _flat_steps(h_seq), _flat_steps(s_seq)
    m = h_flat.shape[1]
    width = min(m, BACKWARD_CHUNK)
    x_dtype = h_seq.dtype if x_dtype is None else x_dtype
    if constant:
        grad_x = torch.empty_like(h_seq[0], dtype=x_dtype)
        out_flat = _flat_step(grad_x)
        work_buf = h_seq.new_empty((T, width))
    else:
        grad_x = torch.empty_like(h_seq, dtype=x_dtype)
        out_flat = _flat_steps(grad_x)
    if fused:
        out_rows = out_flat.unsqueeze(0) if constant else out_flat
        lif_kernels.backward(g_flat, h_flat, s_flat, out_rows, None, *_kernel_params(p))
        return grad_x
    carry_buf = h_seq.new_empty((T, width))
    for start in range(0, m, BACKWARD_CHUNK):
        cols = slice(start, min(m, start + BACKWARD_CHUNK))
        w = cols.stop - cols.start
        h, s = h_flat[:, cols], s_flat[:, cols]
        # The recurrence is linear, so it runs on dL/dH_t / τ directly.
        grad = _direct_grad_over_tau(
            g_flat[:, cols], h, p, work_buf[:, :w] if constant else out_flat[:, cols]
        )
        # dV_t/dH_t · dH_{t+1}/dV_t = (1 - S_t)(1 - 1/τ) with the reset detached.
        carry = torch.sub(p.decay, s, alpha=p.decay, out=carry_buf[:, :w])
        if not p.detach_reset:
            surrogate = SURROGATES[p.surrogate](h - p.v_threshold, p.alpha)
            carry.addcmul_(p.v_reset - h, surrogate, value=p.decay)
        for t in range(T - 2, -1, -1):
            torch.addcmul(grad[t], grad[t + 1], carry[t], out=grad[t])
        if constant:
            torch.sum(grad, 0, out=out_flat[cols])
    return grad_x


class _LIFMultiStep(torch.autograd.Function):
    """LIF over T steps as one autograd node with a hand-written reverse recurrence.

    Backward, with g_t = surrogate(H_t - V_th), dV_t/dH_t = (1 - S_t) [+ (V_reset - H_t) g_t
    when the reset is attached], and dH_{t+1}/dV_t = 1 - 1/τ:

        dL/dH_t = dL/dS_t · g_t + dL/dH_{t+1} · (1 - 1/τ) · dV_t/dH_t
        dL/dX_t = dL/dH_t / τ     (summed over t for a constant input)

    Everything but the recurrence itself is computed for a whole chunk of neurons over all t
    at once, so the loop is one fused multiply-add per step.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        x: Tensor,
        p: NeuronParams,
        constant_steps: int | None,
        spike_dtype: torch.dtype,
        fused: bool,
    ) -> Tensor:
        # A constant input under the fused kernels keeps no membranes: the backward recomputes
        # them from the [N] current (1/T of their size) instead of reading [T, N] back.
        recompute = constant_steps is not None and fused
        state = _lif_forward_loop(x, p, constant_steps, not recompute, spike_dtype, fused)
        ctx.save_for_backward(x if recompute else state.h_seq, state.s_seq)
        ctx.params = p
        ctx.constant_steps = constant_steps
        ctx.recompute = recompute
        ctx.fused = fused  # the backward takes the path the forward took
        ctx.x_dtype = x.dtype
        return state.s_seq

    @staticmethod
    def backward(ctx, grad_s_seq: Tensor) -> tuple[Tensor, None, None, None, None]:  # type: ignore[override]
        saved, s_seq = ctx.saved_tensors
        if ctx.recompute:
            grad_x = _lif_backward_recomputed(grad_s_seq, saved, s_seq, ctx.params)
        else:
            constant = ctx.constant_steps is not None
            grad_x = _lif_backward(
                grad_s_seq, saved, s_seq, ctx.params, constant, ctx.x_dtype, ctx.fused
            )
        return grad_x, None, None, None, None


def _kernel_params(p: NeuronParams) -> tuple[float, float, float, float, float]:
    """What ``lif_kernels.backward`` takes after its tensors: τ, 1 - 1/τ, V_th, V_reset, α."""
    return p.tau, p.decay, p.v_threshold, p.v_reset, p.alpha


def _lif_backward_recomputed(
    grad_s_seq: Tensor, x: Tensor, s_seq: Tensor, p: NeuronParams
) -> Tensor:
    """dL/dX of a constant-input LIF layer whose membranes were not kept (fused kernels only):
    they are recomputed from ``x`` in the forward's memory order, chunk by chunk."""
    if grad_s_seq.stride() != s_seq.stride():
        grad_s_seq = torch.empty_like(s_seq, dtype=grad_s_seq.dtype).copy_(grad_s_seq)
    step = s_seq[0]
    if x.dim() == 4:
        x = x.contiguous(memory_format=_layout_of(step))
    grad_x = torch.empty_like(step, dtype=x.dtype)
    lif_kernels.backward(
        _flat_steps(grad_s_seq),
        None,
        _flat_steps(s_seq),
        _flat_step(grad_x).unsqueeze(0),
        _flat_step(x).unsqueeze(0),
        *_kernel_params(p),
    )
    return grad_x


def lif_multistep(x_seq: Tensor, p: NeuronParams, spike_dtype: torch.dtype | None = None) -> Tensor:
    """Spikes ``[T, N, ...]`` of a LIF layer driven by currents ``x_seq`` of the same shape,
    in ``spike_dtype`` (default ``x_seq``'s; spikes are exact in any float dtype)."""
    return _lif(x_seq, p, None, spike_dtype)


def lif_constant_input(
    x: Tensor, T: int, p: NeuronParams, spike_dtype: torch.dtype | None = None
) -> Tensor:
    """Spikes ``[T, N, ...]`` of a LIF layer driven by the same current ``x`` at every step,
    in ``spike_dtype`` (default ``x``'s)."""
    return _lif(x, p, T, spike_dtype)


def _lif(
    x: Tensor, p: NeuronParams, constant_steps: int | None, spike_dtype: torch.dtype | None
) -> Tensor:
    spike_dtype = x.dtype if spike_dtype is None else spike_dtype
    fused = _fused(x, p)
    if x.dtype == torch.bfloat16 and not fused:
        # bf16 currents (a bf16 layer's output) are computed in float32 as everywhere: the
        # fused kernels widen them as they read, the torch ops need them widened first.
        x = x.float()
    if not (torch.is_grad_enabled() and x.requires_grad):
        return _lif_forward_loop(x, p, constant_steps, False, spike_dtype, fused).s_seq
    if not fused and spike_dtype != x.dtype:
        return _LIFMultiStep.apply(x, p, constant_steps, x.dtype, fused).to(spike_dtype)
    return _LIFMultiStep.apply(x, p, constant_steps, spike_dtype, fused)


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
