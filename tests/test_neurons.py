"""Exact tests of the neuron math against sequences computed by hand."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

from dsqn_rllib.snn import lif_kernels, neurons
from dsqn_rllib.snn.neurons import (
    NeuronParams,
    Surrogate,
    heaviside,
    initial_membrane,
    li_multistep,
    li_step,
    lif_constant_input,
    lif_multistep,
    lif_step,
    spike,
)

DEFAULT = NeuronParams()  # τ = 2, V_th = 1, V_reset = 0, ATan α = 2, reset detached


def run_lif_steps(x_seq: torch.Tensor, p: NeuronParams) -> tuple[torch.Tensor, torch.Tensor]:
    v = initial_membrane(x_seq[0], p)
    spikes, membranes = [], []
    for x in x_seq:
        s, v = lif_step(x, v, p)
        spikes.append(s)
        membranes.append(v)
    return torch.stack(spikes), torch.stack(membranes)


def test_lif_constant_current_matches_hand_computed_sequence() -> None:
    # X = 1.5, τ = 2: H_1 = 0.75 (no spike), H_2 = 0.75 + (1.5 - 0.75)/2 = 1.125 (spike, reset
    # to 0), and the pattern repeats.
    x_seq = torch.full((8, 1), 1.5)
    spikes, membranes = run_lif_steps(x_seq, DEFAULT)
    assert spikes.flatten().tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    assert membranes.flatten().tolist() == [0.75, 0.0, 0.75, 0.0, 0.75, 0.0, 0.75, 0.0]


def test_lif_with_nonzero_reset_and_other_tau() -> None:
    # τ = 4, V_reset = -1, V_th = 0, X = 2: H_1 = -1 + (2 - 0)/4 = -0.5, H_2 = -0.5 + (2 - 0.5)/4
    # = -0.125, H_3 = -0.125 + (2 - 0.875)/4 = 0.15625 -> spike, reset to -1.
    p = NeuronParams(tau=4.0, v_threshold=0.0, v_reset=-1.0)
    spikes, membranes = run_lif_steps(torch.full((4, 1), 2.0), p)
    assert spikes.flatten().tolist() == [0, 0, 1, 0]
    assert membranes.flatten().tolist() == pytest.approx([-0.5, -0.125, -1.0, -0.5])


def test_heaviside_of_zero_is_one_and_threshold_crossing_fires() -> None:
    assert heaviside(torch.tensor([-1e-6, 0.0, 1e-6])).tolist() == [0.0, 1.0, 1.0]
    # X = 2, τ = 2: H_1 = 1.0 = V_th exactly, so the neuron fires at every step.
    spikes, _ = run_lif_steps(torch.full((4, 1), 2.0), DEFAULT)
    assert spikes.flatten().tolist() == [1, 1, 1, 1]


def test_li_charges_towards_the_input_without_spiking() -> None:
    # V_t = 1.5 (1 - 2^-t) for a constant 1.5 with τ = 2.
    x_seq = torch.full((6, 1), 1.5)
    v = initial_membrane(x_seq[0], DEFAULT)
    membranes = []
    for x in x_seq:
        v = li_step(x, v, DEFAULT)
        membranes.append(v.item())
    expected = [1.5 * (1 - 0.5**t) for t in range(1, 7)]
    assert membranes == pytest.approx(expected)
    assert li_multistep(x_seq, DEFAULT).flatten().tolist() == pytest.approx(expected)


@pytest.mark.parametrize(
    ("surrogate", "alpha", "x", "expected"),
    [
        (Surrogate.ATAN, 2.0, 0.0, 1.0),  # α/2
        (Surrogate.ATAN, 2.0, 0.5, 1.0 / (1.0 + (math.pi * 0.5) ** 2)),
        (Surrogate.ATAN, 4.0, -0.25, 2.0 / (1.0 + (math.pi * 0.5) ** 2)),
        (Surrogate.SIGMOID, 4.0, 0.0, 1.0),  # α · 1/4
        (
            Surrogate.SIGMOID,
            4.0,
            0.5,
            4.0 * (1 / (1 + math.exp(-2))) * (1 - 1 / (1 + math.exp(-2))),
        ),
        (Surrogate.RECTANGULAR, 1.0, 0.0, 1.0),
        (Surrogate.RECTANGULAR, 1.0, 0.49, 1.0),
        (Surrogate.RECTANGULAR, 1.0, 0.51, 0.0),
        (Surrogate.RECTANGULAR, 2.0, 0.2, 2.0),
    ],
)
def test_surrogate_gradient_values(
    surrogate: Surrogate, alpha: float, x: float, expected: float
) -> None:
    xt = torch.tensor([x], dtype=torch.float64, requires_grad=True)
    out = spike(xt, surrogate, alpha)
    out.sum().backward()
    assert out.item() == (1.0 if x >= 0 else 0.0)
    assert xt.grad is not None
    assert xt.grad.item() == pytest.approx(expected, rel=1e-12)


PARAM_CASES = [
    NeuronParams(),
    NeuronParams(
        tau=1.5, v_threshold=0.5, v_reset=-0.3, surrogate=Surrogate.SIGMOID, detach_reset=False
    ),
    NeuronParams(
        tau=3.0, v_threshold=0.8, v_reset=0.2, surrogate=Surrogate.RECTANGULAR, surrogate_alpha=0.5
    ),
    NeuronParams(tau=1.0),
    # The fused CPU kernels' configuration (ATan, detached reset) with a non-zero reset.
    NeuronParams(tau=1.7, v_threshold=0.6, v_reset=-0.3),
]


@pytest.mark.parametrize("p", PARAM_CASES)
def test_fused_lif_equals_step_loop_in_value_and_gradient(p: NeuronParams) -> None:
    torch.manual_seed(0)
    x_ref = (torch.randn(8, 5, 7, dtype=torch.float64) * 1.5 + 0.7).requires_grad_()
    x_fused = x_ref.detach().clone().requires_grad_()
    weights = torch.randn(8, 5, 7, dtype=torch.float64)  # a loss that weighs every spike

    s_ref, _ = run_lif_steps(x_ref, p)
    s_fused = lif_multistep(x_fused, p)
    assert torch.equal(s_ref, s_fused)
    assert 0.1 < s_ref.mean().item() < 0.9, "the case must exercise both spikes and silence"

    (s_ref * weights).sum().backward()
    (s_fused * weights).sum().backward()
    assert x_ref.grad is not None and x_fused.grad is not None
    torch.testing.assert_close(x_fused.grad, x_ref.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("p", PARAM_CASES)
def test_constant_input_lif_equals_expanded_input(p: NeuronParams) -> None:
    torch.manual_seed(1)
    x = (torch.randn(4, 6, dtype=torch.float64) + 1.0).requires_grad_()
    x_seq = x.detach().clone().requires_grad_()
    weights = torch.randn(8, 4, 6, dtype=torch.float64)
    s_const = lif_constant_input(x, 8, p)
    s_expanded = lif_multistep(x_seq.unsqueeze(0).expand(8, -1, -1), p)
    assert torch.equal(s_const, s_expanded)
    (s_const * weights).sum().backward()
    (s_expanded * weights).sum().backward()
    torch.testing.assert_close(x.grad, x_seq.grad, rtol=1e-10, atol=1e-12)


def test_detach_reset_changes_the_gradient() -> None:
    torch.manual_seed(2)
    x = torch.randn(8, 16, dtype=torch.float64) + 1.0
    grads = []
    for detach in (True, False):
        xi = x.clone().requires_grad_()
        lif_multistep(xi, NeuronParams(detach_reset=detach)).sum().backward()
        grads.append(xi.grad)
    assert not torch.allclose(grads[0], grads[1])


def test_li_multistep_equals_step_loop_with_reset_offset() -> None:
    p = NeuronParams(tau=1.7, v_reset=-0.4)
    torch.manual_seed(3)
    x_seq = torch.randn(5, 3, dtype=torch.float64)
    v = initial_membrane(x_seq[0], p)
    steps = []
    for x in x_seq:
        v = li_step(x, v, p)
        steps.append(v)
    torch.testing.assert_close(li_multistep(x_seq, p), torch.stack(steps), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"tau": 0.5}, "tau must be a number >= 1"),
        ({"v_threshold": 0.0, "v_reset": 0.0}, "v_threshold must be greater than v_reset"),
        ({"surrogate": "relu"}, "unknown surrogate 'relu'; allowed: atan, sigmoid, rectangular"),
        ({"surrogate_alpha": 0.0}, "surrogate_alpha must be > 0"),
    ],
)
def test_bad_neuron_parameters_are_one_line(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        NeuronParams(**kwargs)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("fused", [False, True], ids=["torch-ops", "fused-kernels"])
@pytest.mark.parametrize("p", PARAM_CASES)
def test_chunked_lif_equals_step_loop_across_chunk_boundaries(
    p: NeuronParams, fused: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path walks the neurons in cache-sized chunks: with chunks of 7 (a ragged last
    one) and channels-last maps, values and gradients are still the step loop's. The fused
    kernels also split the neurons across two threads here."""
    monkeypatch.setattr(neurons, "FORWARD_CHUNK", 7)
    monkeypatch.setattr(neurons, "BACKWARD_CHUNK", 5)
    monkeypatch.setattr(lif_kernels, "CHUNK", 7)
    monkeypatch.setattr(lif_kernels, "MIN_NEURONS_PER_THREAD", 8)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    with contextlib.ExitStack() as stack:
        if not fused:
            stack.enter_context(lif_kernels.torch_ops_only())
        _check_chunked_lif(p)


def _check_chunked_lif(p: NeuronParams) -> None:
    torch.manual_seed(3)
    shape = (6, 2, 3, 4, 5)  # [T, N, C, H, W], each step channels-last below
    base = torch.randn(shape, dtype=torch.float64) * 1.5 + 0.7
    x_ref = base.clone().requires_grad_()
    x_fast = (
        base.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, shape[:2])
    ).requires_grad_()
    weights = torch.randn(shape, dtype=torch.float64)
    s_ref, _ = run_lif_steps(x_ref, p)
    s_fast = lif_multistep(x_fast, p)
    assert s_fast[0].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(s_ref, s_fast)
    (s_ref * weights).sum().backward()
    (s_fast * weights).sum().backward()
    torch.testing.assert_close(x_fast.grad, x_ref.grad, rtol=1e-10, atol=1e-12)
    x_const = base[0].clone().requires_grad_()
    x_expanded = base[0].clone().requires_grad_()
    s_const = lif_constant_input(x_const, 6, p)
    s_expanded, _ = run_lif_steps(x_expanded.unsqueeze(0).expand(6, *shape[1:]), p)
    assert torch.equal(s_const, s_expanded)
    (s_const * weights).sum().backward()
    (s_expanded * weights).sum().backward()
    torch.testing.assert_close(x_const.grad, x_expanded.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("constant", [False, True], ids=["multistep", "constant-input"])
def test_fused_lif_reads_and_writes_bf16_as_the_torch_ops_do_with_conversions(
    constant: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bf16 update hands the LIF layers bf16 currents and wants bf16 spikes: the kernels
    widen and round as they read and write (ragged chunks, two threads here), the torch ops
    convert around themselves. Spikes are the same; gradients the same to bf16 rounding."""
    monkeypatch.setattr(lif_kernels, "CHUNK", 7)
    monkeypatch.setattr(lif_kernels, "MIN_NEURONS_PER_THREAD", 8)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    p = NeuronParams()
    torch.manual_seed(5)
    T, shape = 6, (3, 4, 5, 5)
    base = (torch.randn(shape if constant else (T, *shape)) * 1.5 + 0.7).to(torch.bfloat16)
    weights = torch.randn(T, *shape).to(torch.bfloat16)

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        x = base.clone().requires_grad_()
        if constant:
            s = lif_constant_input(x, T, p, spike_dtype=torch.bfloat16)
        else:
            s = lif_multistep(x, p, spike_dtype=torch.bfloat16)
        (s * weights).sum().backward()
        assert s.dtype == torch.bfloat16 and x.grad is not None
        return s.detach(), x.grad

    s_fused, grad_fused = run()
    with lif_kernels.torch_ops_only():
        s_torch, grad_torch = run()
    assert 0.05 < float(s_fused.float().mean()) < 0.95
    assert torch.equal(s_fused, s_torch)
    assert grad_fused.dtype == torch.bfloat16 and grad_fused.abs().sum() > 0
    torch.testing.assert_close(grad_fused, grad_torch, rtol=1e-2, atol=1e-3)
