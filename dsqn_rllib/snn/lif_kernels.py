"""Fused CPU kernels of the multi-step LIF layer (numba): one pass over memory per layer.

``dsqn_rllib.snn.neurons`` runs the T-step LIF recurrence as a few whole-chunk torch ops per
step. On a CPU those layers are memory-bound (at batch 128, T = 8 the encoder's LIF moves
50 MB tensors) and every op reads and writes its operands again; a compiled loop reads the
input current once and writes each spike (and, for a backward to come, each membrane) once.
Measured on 2 x86 cores (benchmarks/bench_core.py --torch-lif, 1 thread, CPU time): a DSQN
T=8 fp32 update takes 0.81-0.88x the time it takes with the torch ops.

Same arithmetic, same order as the torch path, so spikes and membranes are the same bits:

    forward:  H_t = X_t / τ [+ V_reset / τ] + (1 - 1/τ) V_{t-1};  S_t = H_t ≥ V_th;
              V_t = V_reset where S_t else H_t
    backward: D_t = dL/dS_t / (a + (k H_t - k V_th)²) + D_{t+1} ((1 - 1/τ) - (1 - 1/τ) S_t)
              (ATan surrogate over τ, reset detached: see ``neurons._direct_grad_over_tau``);
              dL/dX_t = D_t, summed over t for a constant input.

Only the configuration the paper and the authors' code use is fused (ATan surrogate, detached
reset, float32/float64/bfloat16 CPU tensors); anything else runs the torch ops. The encoder's
layer (a constant input current) keeps no membranes at all: its backward recomputes them from
the ``[N]`` input, chunk by chunk in cache, instead of reading back ``[T, N]`` of them.

bf16 (``Precision.BF16`` updates): currents, incoming gradients and spikes may be bf16 (as
their uint16 bits). They are widened as they are read and gradients rounded to nearest-even
as they are written; the recurrence itself runs in float32. A bf16 layer and its LIF then
exchange bf16 tensors directly, where the torch ops need a conversion pass over each
``[T, N]`` tensor on each side (~20% of a bf16 update at batch 128).

numba is a dependency; where it cannot be imported (a GPU image built without it) the torch
path runs and nothing else changes. Kernels are compiled on first use and cached on disk
(numba's ``cache=True``): a few seconds once per machine and dtype, then a load.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import Tensor

CHUNK = 4096
"""Neurons per pass: a chunk's T-step working set (membranes of T = 8 steps in the backward:
128 KiB in fp32) stays in a core's L2."""

MIN_NEURONS_PER_THREAD = 1 << 16
"""Below this many neurons per step a layer runs in one thread (a hand-off costs ~50 µs)."""

_DISABLE_ENV = "DSQN_NO_FUSED_LIF"
"""Set (to anything but 0/empty) to run the torch ops instead, e.g. to compare the two."""


def _widen(row: np.ndarray, staging: np.ndarray, w: int) -> np.ndarray:
    """(In the kernels only.) The first ``w`` values of ``row`` in the compute dtype: a float
    row as it is; bf16 bits (uint16) widened into ``staging`` (exact)."""
    raise NotImplementedError("compiled by numba: see _register_overloads")


def _narrow(row: np.ndarray, values: np.ndarray, w: int) -> None:
    """(In the kernels only.) ``values[:w]`` into ``row``: copied, or rounded to bf16 bits
    (to nearest, ties to even, as torch rounds)."""
    raise NotImplementedError("compiled by numba: see _register_overloads")


def _register_overloads(overload: Any, types: Any) -> None:
    """``_widen`` / ``_narrow`` for each dtype, chosen when numba types a kernel: bf16 tensors
    reach the kernels as their uint16 bits (numpy has no bfloat16)."""

    # The typing functions take no annotations: numba compares their signatures with the
    # implementations' and annotations count as a difference.
    @overload(_widen)
    def _widen_numba(row, staging, w):  # type: ignore[no-untyped-def]
        if isinstance(row.dtype, types.Integer):

            def widen_bits(row, staging, w):  # type: ignore[no-untyped-def]
                bits = staging.view(np.uint32)
                for j in range(w):
                    bits[j] = np.uint32(row[j]) << np.uint32(16)
                return staging

            return widen_bits
        return lambda row, staging, w: row

    @overload(_narrow)
    def _narrow_numba(row, values, w):  # type: ignore[no-untyped-def]
        if isinstance(row.dtype, types.Integer):

            def narrow_to_bits(row, values, w):  # type: ignore[no-untyped-def]
                bits = values.view(np.uint32)
                for j in range(w):
                    b = bits[j]
                    even = (b >> np.uint32(16)) & np.uint32(1)
                    row[j] = np.uint16((b + np.uint32(0x7FFF) + even) >> np.uint32(16))

            return narrow_to_bits

        def copy(row, values, w):  # type: ignore[no-untyped-def]
            for j in range(w):
                row[j] = values[j]

        return copy


def _forward_py(
    x: np.ndarray,
    s: np.ndarray,
    h: np.ndarray,
    params: np.ndarray,
    spike_values: np.ndarray,
    chunk: int,
    begin: int,
    end: int,
) -> None:
    """Columns ``[begin, end)`` of the LIF forward, ``chunk`` columns at a time.

    ``x`` is ``[T, M]`` or ``[1, M]`` (a constant current), ``s`` ``[T, M]``; ``h`` is
    ``[T, M]`` or ``[0, 0]`` (not kept). ``params`` (the compute dtype: float32, or float64
    for float64 tensors) holds τ, V_reset/τ, 1 - 1/τ, V_th, V_reset; ``spike_values`` the
    0 and 1 of ``s``'s dtype. ``x`` and ``s`` may be bf16 bits (uint16)."""
    T = s.shape[0]
    constant = x.shape[0] == 1
    keep = h.shape[0] == T
    tau, reset_drive, decay, v_th, v_reset = params[:5]
    no_spike, spike = spike_values[0], spike_values[1]
    v = np.empty(chunk, params.dtype)
    staging = np.empty(chunk, params.dtype)
    for start in range(begin, end, chunk):
        w = min(chunk, end - start)
        v[:w] = v_reset
        if constant:
            xt = _widen(x[0, start : start + w], staging, w)
        for t in range(T):
            if not constant:
                xt = _widen(x[t, start : start + w], staging, w)
            st = s[t, start : start + w]
            # Two copies of the loop body, with and without the membrane store, so that each
            # inner loop is branch-free (vectorised) whatever LLVM makes of the flag.
            if keep:
                ht = h[t, start : start + w]
                for j in range(w):
                    hj = (xt[j] / tau + reset_drive) + decay * v[j]
                    fire = hj >= v_th
                    ht[j] = hj
                    st[j] = spike if fire else no_spike
                    v[j] = v_reset if fire else hj
            else:
                for j in range(w):
                    hj = (xt[j] / tau + reset_drive) + decay * v[j]
                    fire = hj >= v_th
                    st[j] = spike if fire else no_spike
                    v[j] = v_reset if fire else hj


def _backward_py(
    grad_s: np.ndarray,
    h: np.ndarray,
    s: np.ndarray,
    out: np.ndarray,
    x: np.ndarray,
    params: np.ndarray,
    chunk: int,
    begin: int,
    end: int,
) -> None:
    """Columns ``[begin, end)`` of dL/dX, ``chunk`` columns at a time.

    ``out`` is ``[T, M]``, or ``[1, M]`` for a constant input (summed over t). ``h`` is
    ``[T, M]``, or ``[0, 0]``: then the membranes are recomputed from the constant current
    ``x`` (``[1, M]``) as the forward made them. ``params``: the forward's, then a, k and
    k·V_th of the surrogate. ``grad_s``, ``s``, ``out`` and ``x`` may be bf16 bits."""
    T = s.shape[0]
    constant = out.shape[0] == 1
    recompute = h.shape[0] != T
    tau, reset_drive, decay, v_th, v_reset = params[:5]
    a, k, k_th = params[5:8]
    dtype = params.dtype
    zero = dtype.type(0.0)
    later = np.empty(chunk, dtype)  # D_{t+1}
    total = np.empty(chunk, dtype)
    d_t = np.empty(chunk, dtype)
    v = np.empty(chunk, dtype)
    h_chunk = np.empty((T, chunk), dtype)
    staging = np.empty(chunk, dtype)
    for start in range(begin, end, chunk):
        w = min(chunk, end - start)
        if recompute:
            v[:w] = v_reset
            x0 = _widen(x[0, start : start + w], staging, w)
            for t in range(T):
                hc = h_chunk[t]
                for j in range(w):
                    hj = (x0[j] / tau + reset_drive) + decay * v[j]
                    hc[j] = hj
                    v[j] = v_reset if hj >= v_th else hj
        later[:w] = 0.0
        total[:w] = 0.0
        for t in range(T - 1, -1, -1):
            gt = _widen(grad_s[t, start : start + w], staging, w)
            st = s[t, start : start + w]
            ht = h_chunk[t] if recompute else h[t, start : start + w]
            for j in range(w):
                u = k * ht[j] - k_th
                # (1 - 1/τ) - (1 - 1/τ) S_t, which is exactly 0 or 1 - 1/τ
                carry = zero if st[j] != 0 else decay
                d = gt[j] / (a + u * u) + later[j] * carry
                later[j] = d
                total[j] += d
                d_t[j] = d
            if not constant:
                _narrow(out[t, start : start + w], d_t, w)
        if constant:
            _narrow(out[0, start : start + w], total, w)


class _Kernels:
    """The two kernels compiled by numba (imported on first use: ``import dsqn_rllib`` and
    GPU-only work do not pay for it)."""

    def __init__(self, njit: Any) -> None:
        options = {"nogil": True, "cache": True, "boundscheck": False, "error_model": "numpy"}
        self.forward = njit(**options)(_forward_py)
        self.backward = njit(**options)(_backward_py)


@functools.cache
def _kernels() -> _Kernels | None:
    try:
        from numba import njit, types
        from numba.extending import overload
    except ImportError:  # the torch path runs (see the module's note)
        return None
    _register_overloads(overload, types)
    return _Kernels(njit)


_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _threads_for(columns: int) -> int:
    return max(1, min(torch.get_num_threads(), columns // MIN_NEURONS_PER_THREAD))


def _split(kernel: Any, args: tuple, columns: int) -> None:
    """``kernel(*args, CHUNK, begin, end)`` over ``[0, columns)``, in as many threads as torch's
    intra-op pool has (the kernels release the GIL), in CHUNK-aligned parts."""
    global _pool, _pool_size
    threads = _threads_for(columns)
    if threads == 1:
        kernel(*args, CHUNK, 0, columns)
        return
    if _pool is None or _pool_size < threads:
        _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dsqn-lif")
        _pool_size = threads
    per = math.ceil(columns / threads / CHUNK) * CHUNK
    bounds = [(b, min(columns, b + per)) for b in range(0, columns, per)]
    futures = [_pool.submit(kernel, *args, CHUNK, b, e) for b, e in bounds[1:]]
    kernel(*args, CHUNK, *bounds[0])
    for future in futures:
        future.result()


_TORCH_OPS_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "dsqn_torch_lif_only", default=False
)


@contextlib.contextmanager
def torch_ops_only() -> Iterator[None]:
    """Run the LIF layers with the torch ops inside this block (benchmarks and tests compare
    the two paths side by side)."""
    token = _TORCH_OPS_ONLY.set(True)
    try:
        yield
    finally:
        _TORCH_OPS_ONLY.reset(token)


def enabled() -> bool:
    """numba imports, ``DSQN_NO_FUSED_LIF`` is not set and no ``torch_ops_only()`` block is
    open."""
    if _TORCH_OPS_ONLY.get() or os.environ.get(_DISABLE_ENV, "") not in ("", "0"):
        return False
    return _kernels() is not None


_KERNEL_DTYPES = (torch.float32, torch.float64, torch.bfloat16)


def supports(x: Tensor, surrogate_is_atan: bool, detach_reset: bool) -> bool:
    """Whether the fused kernels compute this layer: a CPU float32/float64/bfloat16 tensor,
    the ATan surrogate and a detached reset (the defaults), kernels enabled."""
    return (
        surrogate_is_atan
        and detach_reset
        and x.device.type == "cpu"
        and x.dtype in _KERNEL_DTYPES
        and enabled()
    )


def _array(t: Tensor) -> np.ndarray:
    """The tensor's memory as numpy: bf16 as its uint16 bits (numpy has no bfloat16)."""
    t = t.detach()
    return (t.view(torch.uint16) if t.dtype == torch.bfloat16 else t).numpy()


def _params(
    tensors: tuple[Tensor, ...],
    tau: float,
    decay: float,
    v_th: float,
    v_reset: float,
    surrogate: tuple[float, ...] = (),
) -> np.ndarray:
    """The kernels' constants in the compute dtype (float64 where a tensor is float64, else
    float32, which is also what bf16 tensors are computed in): each rounded once, as torch
    rounds a Python scalar to a tensor's dtype."""
    values = (tau, v_reset / tau, decay, v_th, v_reset, *surrogate)
    wide = _compute_dtype(tensors) == torch.float64
    return np.array(values, dtype=np.float64 if wide else np.float32)


def _compute_dtype(tensors: tuple[Tensor, ...]) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def forward(
    x_flat: Tensor,
    s_flat: Tensor,
    h_flat: Tensor | None,
    tau: float,
    decay: float,
    v_th: float,
    v_reset: float,
) -> None:
    """Spikes (and membranes, when ``h_flat`` is given) of ``[T, M]`` / ``[1, M]`` currents
    into ``[T, M]`` views (see ``neurons._flat_steps``); currents and spikes may be bf16."""
    given = (x_flat, s_flat) if h_flat is None else (x_flat, s_flat, h_flat)
    params = _params(given, tau, decay, v_th, v_reset)
    h = h_flat if h_flat is not None else x_flat.new_empty((0, 0), dtype=_compute_dtype(given))
    spikes = _array(s_flat)
    spike_values = np.array([0.0, 1.0], dtype=np.float32).astype(spikes.dtype)
    if s_flat.dtype == torch.bfloat16:
        spike_values = np.array([0, 0x3F80], dtype=np.uint16)  # bf16's 0.0 and 1.0
    args = (_array(x_flat), spikes, _array(h), params, spike_values)
    kernel = _kernels().forward  # type: ignore[union-attr]  # supports() checked it
    _split(kernel, args, s_flat.shape[1])


def backward(
    grad_s_flat: Tensor,
    h_flat: Tensor | None,
    s_flat: Tensor,
    out_flat: Tensor,
    x_flat: Tensor | None,
    tau: float,
    decay: float,
    v_th: float,
    v_reset: float,
    alpha: float,
) -> None:
    """dL/dX into ``out_flat`` (``[T, M]``, or ``[1, M]`` summed over t for a constant input).
    Without ``h_flat`` the membranes are recomputed from the constant current ``x_flat``.
    Gradients, spikes and currents may be bf16 (computed in float32, rounded once)."""
    a = 2.0 * tau / alpha  # the ATan surrogate over τ as 1 / (a + (k u)²)
    k = math.pi / 2 * alpha * math.sqrt(a)
    given = tuple(t for t in (grad_s_flat, h_flat, out_flat, x_flat) if t is not None)
    params = _params(given, tau, decay, v_th, v_reset, (a, k, k * v_th))
    empty = s_flat.new_empty((0, 0), dtype=_compute_dtype(given))  # typed as the membranes
    h = h_flat if h_flat is not None else empty
    x = x_flat if x_flat is not None else empty
    args = (_array(grad_s_flat), _array(h), _array(s_flat), _array(out_flat), _array(x), params)
    kernel = _kernels().backward  # type: ignore[union-attr]  # supports() checked it
    _split(kernel, args, s_flat.shape[1])
