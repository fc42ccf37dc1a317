"""Fused CPU kernels of the multi-step LIF layer (numba): one pass over memory per layer.

``dsqn_rllib.snn.neurons`` runs the T-step LIF recurrence as a few whole-chunk torch ops per
step. On a CPU those layers are memory-bound (at batch 128, T = 8 the encoder's LIF moves
50 MB tensors) and every op reads and writes its operands again; a compiled loop reads the
input current once and writes each spike (and, for a backward to come, each membrane) once.
Measured on 2 x86 cores (benchmarks/bench_core.py): the LIF layers of a DSQN T=8 update at
batch 128 take about half the time of the torch ops.

Same arithmetic, same order as the torch path, so spikes and membranes are the same bits:

    forward:  H_t = X_t / τ [+ V_reset / τ] + (1 - 1/τ) V_{t-1};  S_t = H_t ≥ V_th;
              V_t = V_reset where S_t else H_t
    backward: D_t = dL/dS_t / (a + (k H_t - k V_th)²) + D_{t+1} ((1 - 1/τ) - (1 - 1/τ) S_t)
              (ATan surrogate over τ, reset detached: see ``neurons._direct_grad_over_tau``);
              dL/dX_t = D_t, summed over t for a constant input.

Only the configuration the paper and the authors' code use is fused (ATan surrogate, detached
reset, float32/float64 CPU tensors); anything else runs the torch ops. The encoder's layer
(a constant input current) keeps no membranes at all: its backward recomputes them from the
``[N]`` input, chunk by chunk in cache, instead of reading back ``[T, N]`` of them.

numba is a dependency; where it cannot be imported (a GPU image built without it) the torch
path runs and nothing else changes. Kernels are compiled on first use and cached on disk
(numba's ``cache=True``): about 2 s once per machine, then a load.
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


def _forward_py(
    x: np.ndarray,
    s: np.ndarray,
    h: np.ndarray,
    params: np.ndarray,
    chunk: int,
    begin: int,
    end: int,
) -> None:
    """Columns ``[begin, end)`` of the LIF forward, ``chunk`` columns at a time. ``x`` is
    ``[T, M]`` or ``[1, M]`` (a constant current), ``s`` ``[T, M]``; ``h`` is ``[T, M]`` or
    ``[0, 0]`` (not kept);
    ``params`` holds τ, V_reset/τ, 1 - 1/τ, V_th, V_reset, 1, 0 in the tensors' dtype."""
    T = s.shape[0]
    constant = x.shape[0] == 1
    keep = h.shape[0] == T
    tau, reset_drive, decay, v_th, v_reset, one, zero = params[:7]
    v = np.empty(chunk, s.dtype)
    for start in range(begin, end, chunk):
        w = min(chunk, end - start)
        v[:w] = v_reset
        for t in range(T):
            xt = x[0 if constant else t, start : start + w]
            st = s[t, start : start + w]
            if keep:
                ht = h[t, start : start + w]
                for j in range(w):
                    hj = (xt[j] / tau + reset_drive) + decay * v[j]
                    fire = hj >= v_th
                    ht[j] = hj
                    st[j] = one if fire else zero
                    v[j] = v_reset if fire else hj
            else:
                for j in range(w):
                    hj = (xt[j] / tau + reset_drive) + decay * v[j]
                    fire = hj >= v_th
                    st[j] = one if fire else zero
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
    """Columns ``[begin, end)`` of dL/dX, ``chunk`` columns at a time. ``out`` is ``[T, M]``,
    or ``[1, M]`` for a constant input (summed over t). ``h`` is ``[T, M]``, or ``[0, 0]``:
    then the membranes are recomputed from the constant current ``x`` (``[1, M]``) as the
    forward made them.
    ``params``: the forward's, then a, k and k·V_th of the surrogate."""
    T = s.shape[0]
    constant = out.shape[0] == 1
    recompute = h.shape[0] != T
    tau, reset_drive, decay, v_th, v_reset = params[:5]
    a, k, k_th = params[7:10]
    dtype = s.dtype
    later = np.empty(chunk, dtype)  # D_{t+1}
    total = np.empty(chunk, dtype)
    v = np.empty(chunk, dtype)
    h_chunk = np.empty((T, chunk), dtype)
    for start in range(begin, end, chunk):
        w = min(chunk, end - start)
        if recompute:
            v[:w] = v_reset
            x0 = x[0, start : start + w]
            for t in range(T):
                hc = h_chunk[t]
                for j in range(w):
                    hj = (x0[j] / tau + reset_drive) + decay * v[j]
                    hc[j] = hj
                    v[j] = v_reset if hj >= v_th else hj
        later[:w] = 0.0
        total[:w] = 0.0
        for t in range(T - 1, -1, -1):
            gt = grad_s[t, start : start + w]
            st = s[t, start : start + w]
            ht = h_chunk[t, :w] if recompute else h[t, start : start + w]
            if constant:
                for j in range(w):
                    u = k * ht[j] - k_th
                    d = gt[j] / (a + u * u) + later[j] * (decay - decay * st[j])
                    total[j] += d
                    later[j] = d
            else:
                ot = out[t, start : start + w]
                for j in range(w):
                    u = k * ht[j] - k_th
                    d = gt[j] / (a + u * u) + later[j] * (decay - decay * st[j])
                    ot[j] = d
                    later[j] = d
        if constant:
            out[0, start : start + w] = total[:w]


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
        from numba import njit
    except ImportError:  # the torch path runs (see the module's note)
        return None
    return _Kernels(njit)


_pool: ThreadPoolExecutor | None = None


def _threads_for(columns: int) -> int:
    return max(1, min(torch.get_num_threads(), columns // MIN_NEURONS_PER_THREAD))


def _split(kernel: Any, args: tuple, columns: int) -> None:
    """``kernel(*args, CHUNK, begin, end)`` over ``[0, columns)``, in as many threads as torch's
    intra-op pool has (the kernels release the GIL), in CHUNK-aligned parts."""
    global _pool
    threads = _threads_for(columns)
    if threads == 1:
        kernel(*args, CHUNK, 0, columns)
        return
    if _pool is None or _pool._max_workers < threads:
        _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dsqn-lif")
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


def supports(x: Tensor, surrogate_is_atan: bool, detach_reset: bool) -> bool:
    """Whether the fused kernels compute this layer: a CPU float32/float64 tensor, the ATan
    surrogate and a detached reset (the defaults), kernels enabled."""
    return (
        surrogate_is_atan
        and detach_reset
        and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and enabled()
    )


def _params(
    like: Tensor,
    tau: float,
    decay: float,
    v_th: float,
    v_reset: float,
    surrogate: tuple[float, ...] = (),
) -> np.ndarray:
    """The kernels' constants as an array of ``like``'s dtype: each rounded once, as torch
    rounds a Python scalar to the tensor's dtype."""
    values = (tau, v_reset / tau, decay, v_th, v_reset, 1.0, 0.0, *surrogate)
    return np.array(values, dtype=_array(like).dtype)


def _array(t: Tensor) -> np.ndarray:
    return t.detach().numpy()


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
    into ``[T, M]`` views (see ``neurons._flat_steps``)."""
    h = h_flat if h_flat is not None else s_flat.new_empty((0, 0))
    params = _params(s_flat, tau, decay, v_th, v_reset)
    kernel = _kernels().forward  # type: ignore[union-attr]  # supports() checked it
    _split(kernel, (_array(x_flat), _array(s_flat), _array(h), params), s_flat.shape[1])


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
    Without ``h_flat`` the membranes are recomputed from the constant current ``x_flat``."""
    a = 2.0 * tau / alpha  # the ATan surrogate over τ as 1 / (a + (k u)²)
    k = math.pi / 2 * alpha * math.sqrt(a)
    h = h_flat if h_flat is not None else s_flat.new_empty((0, 0))
    x = x_flat if x_flat is not None else s_flat.new_empty((0, 0))
    params = _params(s_flat, tau, decay, v_th, v_reset, (a, k, k * v_th))
    args = (_array(grad_s_flat), _array(h), _array(s_flat), _array(out_flat), _array(x), params)
    kernel = _kernels().backward  # type: ignore[union-attr]  # supports() checked it
    _split(kernel, args, s_flat.shape[1])
