"""The learner's optimizer helpers: the fused Adam and the non-finite-gradient guard."""

from __future__ import annotations

import pytest
import torch

from dsqn_rllib.snn.optim import make_adam, step_if_finite


def _adams(fused: bool) -> tuple[torch.nn.Parameter, torch.optim.Adam]:
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(5, 3))
    optimizer = (
        make_adam([weight], lr=0.01, eps=1.5e-4)
        if fused
        else torch.optim.Adam([weight], lr=0.01, eps=1.5e-4)
    )
    assert bool(optimizer.defaults.get("fused")) == fused
    return weight, optimizer


@pytest.mark.parametrize("fused", [True, False])
def test_finite_gradients_step_exactly_as_adam(fused: bool) -> None:
    guarded_weight, guarded = _adams(fused)
    plain_weight, plain = _adams(fused)
    for step in range(3):
        grad = torch.randn(5, 3, generator=torch.Generator().manual_seed(step))
        guarded_weight.grad, plain_weight.grad = grad.clone(), grad.clone()
        assert step_if_finite(guarded).item() == 0.0
        plain.step()
    assert torch.equal(guarded_weight, plain_weight)
    assert torch.equal(guarded_weight.grad, plain_weight.grad)  # the check leaves grads as is


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_gradient_skips_the_whole_step(fused: bool, bad: float) -> None:
    weight, optimizer = _adams(fused)
    weight.grad = torch.ones(5, 3)
    step_if_finite(optimizer)
    before = weight.detach().clone()
    state = {k: v.clone() for k, v in optimizer.state[weight].items()}
    weight.grad = torch.ones(5, 3)
    weight.grad[2, 1] = bad
    assert step_if_finite(optimizer).item() == 1.0
    assert torch.equal(weight, before)  # no entry moved, not even the finite ones
    for key, value in optimizer.state[weight].items():
        assert torch.equal(value, state[key]), key  # moments and step count untouched
    weight.grad = torch.ones(5, 3)
    assert step_if_finite(optimizer).item() == 0.0
    assert not torch.equal(weight, before)


@pytest.mark.parametrize("fused", [True, False])
def test_a_huge_but_finite_gradient_still_steps(fused: bool) -> None:
    """1,000 gradients of 1e18: their sum of squares (1e39) overflows float32, so a guard on the
    2-norm would skip this step; Adam itself takes it (each 1e36 fits)."""
    weight = torch.nn.Parameter(torch.zeros(1000))
    optimizer = make_adam([weight], lr=0.01, eps=1e-8) if fused else torch.optim.Adam([weight])
    weight.grad = torch.full((1000,), 1e18)
    assert torch.linalg.vector_norm(weight.grad).isinf()  # what a 2-norm guard would see
    assert step_if_finite(optimizer).item() == 0.0
    assert torch.isfinite(weight).all() and (weight < 0).all()
