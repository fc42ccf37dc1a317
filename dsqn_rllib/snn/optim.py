"""The learner's optimizer, shared by the RLlib learner and the benchmarks' plain loops."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


def make_adam(params: Iterable[torch.nn.Parameter], lr: float, eps: float) -> torch.optim.Adam:
    """Adam with the fused kernel where every parameter allows it (float tensors on CPU or
    CUDA), else the default implementation: the same update rule, one kernel for all tensors
    instead of ~10 ops per tensor (measured on 2 CPU cores: Adam's step 9.3 → 1.2 ms for DSQN
    T=8, 5.4 → 1.4 ms for the Nature CNN, 5–13% of a whole update)."""
    params = list(params)
    fusable = bool(params) and all(
        p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params
    )
    if fusable:
        try:
            return torch.optim.Adam(params, lr=lr, eps=eps, fused=True)
        except RuntimeError:  # a torch build without the fused kernel for this device
            pass
    return torch.optim.Adam(params, lr=lr, eps=eps)


def step_if_finite(optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """``optimizer.step()`` unless a gradient holds an inf or NaN; returns a 0-dim float
    tensor, 1.0 where the step was skipped.

    One foreach reduction (the largest |gradient| over every tensor: NaN and inf propagate,
    and a max cannot overflow as a sum of squares could) and one host sync per update, with
    public API only. RLlib's own guard syncs twice per parameter tensor: 20
    ``isfinite().all()`` calls, ~10 ms of a 43 ms Nature-CNN update on 2 CPU cores, and 20
    device syncs per update on a GPU.
    """
    grads = [
        p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None
    ]
    if not grads:
        return torch.zeros(())
    largest = torch.nn.utils.get_total_norm(grads, norm_type=math.inf, foreach=True)
    skipped = (~torch.isfinite(largest)).float()
    if not skipped.item():
        optimizer.step()
    return skipped
