"""The learner's optimizer, shared by the RLlib learner and the benchmarks' plain loops."""

from __future__ import annotations

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

    One fused kernel checks every gradient. A fused optimizer takes the result as its
    ``found_inf`` and skips on the device (as under ``torch.amp.GradScaler``), so the guard
    costs no host sync; any other optimizer costs one. RLlib's own guard syncs twice per
    parameter tensor: 20 ``isfinite().all()`` calls, ~10 ms of a 43 ms Nature-CNN update on
    2 CPU cores, and 20 device syncs per update on a GPU.
    """
    grads = [
        p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None
    ]
    if not grads:
        return torch.zeros(())
    found_inf = torch.zeros((), device=grads[0].device)
    # Multiplies every gradient by 1.0 (exact) and sets found_inf where one is not finite.
    torch._amp_foreach_non_finite_check_and_unscale_(
        grads, found_inf, torch.ones((), device=found_inf.device)
    )
    if optimizer.defaults.get("fused"):
        optimizer.found_inf = found_inf  # type: ignore[attr-defined]
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf  # type: ignore[attr-defined]
    elif not found_inf.item():
        optimizer.step()
    return found_inf
