"""The networks: structure, readouts, state isolation, execution paths, bad input."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from dsqn_rllib import DQN, DSQN, MLP, ExecutionPath, SpikingMLP, build_q_network
from dsqn_rllib.snn.networks import (
    MAX_IMAGE_CHANNELS,
    NATURE_CONVS,
    ConvSpec,
    SpikingQNetwork,
    image_layout,
    min_image_size,
)
from dsqn_rllib.snn.neurons import NeuronParams, initial_membrane, lif_step
from dsqn_rllib.snn.readouts import Readout, last_mem, max_mem, mean_mem

ATARI = (4, 84, 84)
ATARI_HWC = (84, 84, 4)  # RLlib's Atari wrappers, old and new stack


def amplify(net: nn.Module, factor: float = 6.0) -> nn.Module:
    """Scale the default (small) weights so that every LIF layer fires, not just the first."""
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(factor)
    return net


def test_readouts_on_a_known_membrane_trace() -> None:
    v = torch.tensor([[[1.0, -1.0]], [[3.0, 0.0]], [[2.0, -2.0]]])  # [T=3, B=1, A=2]
    assert last_mem(v).tolist() == [[2.0, -2.0]]
    assert max_mem(v).tolist() == [[3.0, 0.0]]
    assert mean_mem(v).tolist() == [[2.0, -1.0]]


def test_public_contract_shapes_and_layer_order() -> None:
    net = DSQN(obs_shape=ATARI, num_actions=6, T=8, readout="max-mem")
    q = net(torch.zeros(5, *ATARI))
    assert q.shape == (5, 6)
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert [type(m).__name__ for m in layers] == ["Conv2d", "Conv2d", "Conv2d", "Linear", "Linear"]
    assert [(m.out_channels, m.kernel_size[0], m.stride[0]) for m in layers[:3]] == [
        (32, 8, 4),
        (64, 4, 2),
        (64, 3, 1),
    ]
    assert (layers[3].in_features, layers[3].out_features) == (64 * 7 * 7, 512)
    assert (layers[4].in_features, layers[4].out_features) == (512, 6)
    dqn_layers = [
        m
        for m in DQN(obs_shape=ATARI, num_actions=6).modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    assert [tuple(m.weight.shape) for m in dqn_layers] == [tuple(m.weight.shape) for m in layers]


@pytest.mark.parametrize("obs_shape", [(4, 84, 84), (1, 84, 84), (3, 84, 84), (2, 64, 96)])
def test_layer_sizes_follow_the_observation_shape(obs_shape: tuple[int, int, int]) -> None:
    for net in (DSQN(obs_shape, 3, T=2), DQN(obs_shape, 3)):
        q = net(torch.rand(2, *obs_shape))
        assert q.shape == (2, 3)


def test_bias_option_removes_every_bias() -> None:
    net = DSQN(ATARI, 4, bias=False)
    assert all(
        getattr(m, "bias", None) is None
        for m in net.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    )
    assert all(
        m.bias is not None
        for m in DSQN(ATARI, 4).modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    )


def test_uint8_observations_are_scaled_and_float_used_as_given() -> None:
    torch.manual_seed(0)
    net = amplify(DSQN(ATARI, 6))
    frames = torch.randint(0, 256, (3, *ATARI), dtype=torch.uint8)
    torch.testing.assert_close(net(frames), net(frames.float() / 255.0))
    assert not torch.allclose(net(frames), net(frames.float()))


def test_dqn_runs_its_convs_channels_last_on_cpu_and_computes_the_nchw_function() -> None:
    torch.manual_seed(0)
    net = DQN(ATARI, 6)
    frames = torch.randint(0, 256, (5, *ATARI), dtype=torch.uint8)
    seen: list[bool] = []
    net.layers["conv1"].register_forward_hook(
        lambda m, args, out: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    q = net(frames)
    assert seen == [True]
    # The plain NCHW computation, layer by layer, gives the same values and gradients.
    x = frames.float() / 255.0
    assert x.is_contiguous()
    for name in ("conv1", "conv2", "conv3"):
        x = torch.relu(net.layers[name](x).contiguous())
    reference = net.layers["out"](torch.relu(net.layers["fc"](x.flatten(1))))
    torch.testing.assert_close(q, reference)
    grad_q = torch.autograd.grad(q.sum(), net.layers["conv1"].weight)[0]
    grad_ref = torch.autograd.grad(reference.sum(), net.layers["conv1"].weight)[0]
    torch.testing.assert_close(grad_q, grad_ref)


@pytest.mark.parametrize("readout", [r.value for r in Readout])
def test_gradient_reaches_every_layer(readout: str) -> None:
    torch.manual_seed(0)
    net = amplify(DSQN(ATARI, 6, readout=readout))  # every layer active
    net(torch.rand(4, *ATARI)).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum().item() > 0, f"no gradient reached {name}"


@pytest.mark.parametrize("execution", ["reference", "folded"])
def test_no_hidden_state_repeat_calls_and_batch_independence(execution: str) -> None:
    torch.manual_seed(0)
    net = amplify(DSQN(ATARI, 6, execution=execution)).double()
    obs = torch.rand(4, *ATARI, dtype=torch.float64)
    first = net(obs)
    torch.testing.assert_close(net(obs), first, rtol=0, atol=0)
    # A sample's Q does not depend on what else is in its batch.
    alone = net(obs[2:3])
    with_others = net(torch.cat([torch.rand(3, *ATARI, dtype=torch.float64), obs[2:3]]))[-1:]
    torch.testing.assert_close(alone, first[2:3], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(with_others, first[2:3], rtol=1e-9, atol=1e-9)


def _q_and_grads(
    net: SpikingQNetwork, obs: torch.Tensor, path: str
) -> tuple[torch.Tensor, list[torch.Tensor], dict]:
    object.__setattr__(net.config, "execution", ExecutionPath(path))
    net.zero_grad()
    q, stats = net(obs, return_stats=True)
    (q * torch.linspace(-1, 1, q.numel(), dtype=q.dtype).view_as(q)).sum().backward()
    return (
        q.detach(),
        [p.grad.clone() for p in net.parameters()],
        {k: v.item() for k, v in stats.rates.items()},
    )


@pytest.mark.parametrize(
    ("readout", "surrogate"),
    list(itertools.product([r.value for r in Readout], ["atan", "sigmoid", "rectangular"])),
)
def test_reference_and_folded_paths_agree(readout: str, surrogate: str) -> None:
    # float64 so that a threshold crossing never flips between two summation orders.
    torch.manual_seed(0)
    net = amplify(
        DSQN(
            ATARI,
            6,
            T=6,
            readout=readout,
            surrogate=surrogate,
            tau=1.5,
            v_reset=-0.2,
            detach_reset=False,
        )
    ).double()
    obs = torch.rand(3, *ATARI, dtype=torch.float64)
    q_ref, g_ref, rates_ref = _q_and_grads(net, obs, "reference")
    q_fast, g_fast, rates_fast = _q_and_grads(net, obs, "folded")
    assert all(rate > 0.01 for rate in rates_ref.values()), f"every layer must fire: {rates_ref}"
    assert rates_fast == pytest.approx(rates_ref, abs=1e-12)
    torch.testing.assert_close(q_fast, q_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_fast, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_float32_paths_agree_on_a_small_network() -> None:
    torch.manual_seed(0)
    net = amplify(SpikingMLP((8,), 3, hidden_sizes=(32, 32), readout="max-mem"), 3.0)
    obs = torch.randn(16, 8)
    q_ref, g_ref, _ = _q_and_grads(net, obs, "reference")
    q_fast, g_fast, _ = _q_and_grads(net, obs, "folded")
    torch.testing.assert_close(q_fast, q_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_fast, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_firing_rates_are_the_spike_means_of_each_layer() -> None:
    torch.manual_seed(0)
    net = amplify(DSQN(ATARI, 6, T=4)).double()
    obs = torch.rand(2, *ATARI, dtype=torch.float64)
    q_plain = net(obs)
    q, stats = net(obs, return_stats=True)
    torch.testing.assert_close(q, q_plain)
    assert set(stats.rates) == {"conv1", "conv2", "conv3", "fc"}
    # conv1's LIF recomputed by hand from its (constant) current.
    current = net.layers["conv1"](obs)
    p = NeuronParams()
    v = initial_membrane(current, p)
    total = 0.0
    for _ in range(4):
        s, v = lif_step(current, v, p)
        total += s.mean().item()
    assert stats.rates["conv1"].item() == pytest.approx(total / 4, abs=1e-12)
    assert stats.neurons == {
        "conv1": 32 * 20 * 20,
        "conv2": 64 * 9 * 9,
        "conv3": 64 * 7 * 7,
        "fc": 512,
    }
    expected = sum(stats.rates[k].item() * stats.neurons[k] * 4 for k in stats.rates)
    assert stats.spikes_per_sample() == pytest.approx(expected)


def test_mlp_variants_and_factory() -> None:
    assert isinstance(build_q_network("dsqn", (4,), 2), SpikingMLP)
    assert isinstance(build_q_network("dqn", (4,), 2), MLP)
    assert isinstance(build_q_network("dsqn", ATARI, 2, T=2), DSQN)
    assert isinstance(build_q_network("dqn", ATARI, 2), DQN)
    net = SpikingMLP(obs_shape=(4,), num_actions=2, T=4, readout="mean-mem", hidden_sizes=(16,))
    assert net(torch.randn(7, 4)).shape == (7, 2)
    assert MLP(obs_shape=(4,), num_actions=2)(torch.randn(7, 4)).shape == (7, 2)


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: DSQN(ATARI, 6, T=0), "T (simulation steps) must be an integer >= 1"),
        (lambda: DSQN(ATARI, 6, tau=0.9), "tau must be a number >= 1"),
        (lambda: DSQN(ATARI, 6, v_threshold=0.0), "v_threshold must be greater than v_reset"),
        (
            lambda: DSQN(ATARI, 6, readout="min-mem"),
            "unknown readout 'min-mem'; allowed: last-mem, max-mem",
        ),
        (lambda: DSQN(ATARI, 6, surrogate="tanh"), "unknown surrogate 'tanh'"),
        (lambda: DSQN(ATARI, 0), "num_actions must be an integer >= 1"),
        (lambda: DQN(ATARI, -2), "num_actions must be an integer >= 1"),
        (lambda: DSQN((84, 84), 6), "obs_shape (84, 84) is not an image stack"),
        (lambda: DSQN((4, 20, 20), 6), "obs_shape (4, 20, 20) is not an image stack"),
        (lambda: DSQN(ATARI, 6, execution="gpu"), "unknown execution path 'gpu'"),
        (lambda: DSQN(ATARI, 6, T8=4), "unknown spiking option(s) ['T8']"),
        (lambda: build_q_network("snn", ATARI, 6), "unknown model 'snn'; allowed: dsqn, dqn"),
        (lambda: build_q_network("dqn", ATARI, 6, T=4), "apply to the spiking model only"),
    ],
)
def test_bad_configuration_is_one_clear_line(build, fragment: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError) as info:
        build()
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("obs", "fragment"),
    [
        (
            torch.zeros(2, 3, 84, 84),
            "observation shape (2, 3, 84, 84) does not match (B, 4, 84, 84)",
        ),
        (torch.zeros(4, 84, 84), "observation shape (4, 84, 84) does not match (B, 4, 84, 84)"),
        (
            torch.zeros(2, 4, 84, 84, dtype=torch.int64),
            "observation dtype torch.int64 is not supported",
        ),
        (
            torch.zeros(2, 4, 84, 84, dtype=torch.bool),
            "observation dtype torch.bool is not supported",
        ),
    ],
)
@pytest.mark.parametrize("model", [DSQN, DQN])
def test_bad_observations_are_one_clear_line(obs: torch.Tensor, fragment: str, model: type) -> None:
    with pytest.raises(ValueError) as info:
        model(ATARI, 6)(obs)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("model", ["dsqn", "dqn"])
def test_counts_from_gymnasium_spaces_are_taken_as_they_come(model: str) -> None:
    """``Discrete.n`` is a numpy integer and a Box's shape may hold them: both build a net."""
    import gymnasium as gym
    import numpy as np

    cartpole = gym.make("CartPole-v1")
    assert isinstance(cartpole.action_space.n, np.integer)
    mlp = build_q_network(
        model,
        cartpole.observation_space.shape,
        cartpole.action_space.n,
        hidden_sizes=(np.int64(8),),
    )
    assert type(mlp.num_actions) is int and mlp(torch.zeros(3, 4)).shape == (3, 2)
    net = build_q_network(model, tuple(np.array(ATARI)), np.int64(6))
    assert net.obs_shape == ATARI and all(type(d) is int for d in net.obs_shape)
    assert net(torch.zeros(2, *ATARI, dtype=torch.uint8)).shape == (2, 6)
    if model == "dsqn":
        assert DSQN(ATARI, 6, T=np.int64(3)).T == 3
    with pytest.raises(ValueError, match=r"num_actions must be an integer >= 1, got np\.int64"):
        build_q_network(model, ATARI, np.int64(0))
    with pytest.raises(ValueError, match="num_actions must be an integer >= 1, got True"):
        build_q_network(model, ATARI, True)


# ------------------------------------------------------------------------------------------------
# Observation layouts: (C, H, W) and (H, W, C)
# ------------------------------------------------------------------------------------------------


def test_the_smallest_image_is_computed_from_the_conv_stack() -> None:
    assert min_image_size(NATURE_CONVS) == 36  # 36 -8/4-> 8 -4/2-> 3 -3/1-> 1
    assert min_image_size((ConvSpec(8, 3, 1),)) == 3
    for shape in [(4, 36, 36), (36, 36, 4)]:
        assert DSQN(shape, 2, T=1)(torch.rand(1, *shape)).shape == (1, 2)
    for shape in [(4, 35, 36), (36, 35, 4)]:
        with pytest.raises(ValueError, match="H, W >= 36"):
            DQN(shape, 2)


@pytest.mark.parametrize(
    ("shape", "layout"),
    [
        ((4, 84, 84), ((4, 84, 84), False)),
        ((84, 84, 4), ((4, 84, 84), True)),
        ((12, 64, 96), ((12, 64, 96), False)),  # 4 stacked RGB frames
        ((64, 96, 12), ((12, 64, 96), True)),
        ((1, 36, 200), ((1, 36, 200), False)),
    ],
)
def test_the_layout_is_read_from_the_shape(shape: tuple, layout: tuple) -> None:
    assert image_layout(shape) == layout
    for net in (DSQN(shape, 3, T=1), DQN(shape, 3), build_q_network("dsqn", shape, 3, T=1)):
        assert net.channels_last is layout[1]
        assert net.obs_shape == shape  # what forward checks: the env's shape, unchanged
        conv1 = net.layers["conv1"]
        assert conv1.in_channels == layout[0][0]
    for net in (build_q_network("dsqn", (8,), 2), build_q_network("dqn", (8,), 2)):
        assert net.channels_last is False


@pytest.mark.parametrize("model", [DSQN, DQN])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_same_weights_same_q_and_gradients_for_chw_and_its_hwc_transpose(
    model: type, dtype: torch.dtype
) -> None:
    torch.manual_seed(0)
    options = {"T": 4} if model is DSQN else {}
    chw = amplify(model(ATARI, 6, **options))  # every DSQN layer fires
    hwc = model(ATARI_HWC, 6, **options)
    hwc.load_state_dict(chw.state_dict())
    frames = torch.randint(0, 256, (5, *ATARI), dtype=torch.uint8)
    obs_chw = frames if dtype == torch.uint8 else frames.float() / 255.0
    obs_hwc = obs_chw.permute(0, 2, 3, 1).contiguous()  # a real (B, H, W, C) batch
    if model is DSQN:
        q_chw, stats = chw(obs_chw, return_stats=True)
        assert all(rate.item() > 0.01 for rate in stats.rates.values()), stats.rates
        q_hwc, stats_hwc = hwc(obs_hwc, return_stats=True)
        assert {k: v.item() for k, v in stats_hwc.rates.items()} == pytest.approx(
            {k: v.item() for k, v in stats.rates.items()}, abs=1e-6
        )
    else:
        q_chw, q_hwc = chw(obs_chw), hwc(obs_hwc)
    torch.testing.assert_close(q_hwc, q_chw)
    weights = torch.linspace(-1, 1, q_chw.numel()).view_as(q_chw)
    grads_chw = torch.autograd.grad((q_chw * weights).sum(), list(chw.parameters()))
    grads_hwc = torch.autograd.grad((q_hwc * weights).sum(), list(hwc.parameters()))
    for name, a, b in zip(dict(chw.named_parameters()), grads_chw, grads_hwc, strict=True):
        assert a.abs().sum() > 0, f"no gradient reached {name}"
        torch.testing.assert_close(b, a, msg=lambda m, name=name: f"{name}: {m}")
    if dtype == torch.float32:  # and the gradient of Q wrt the frame is the transpose
        obs_chw, obs_hwc = obs_chw.requires_grad_(), obs_hwc.requires_grad_()
        (g_chw,) = torch.autograd.grad((chw(obs_chw) * weights).sum(), obs_chw)
        (g_hwc,) = torch.autograd.grad((hwc(obs_hwc) * weights).sum(), obs_hwc)
        torch.testing.assert_close(g_hwc, g_chw.permute(0, 2, 3, 1))


def test_dqn_runs_channels_last_frames_in_channels_last_memory_without_a_copy() -> None:
    net = DQN(ATARI_HWC, 6)
    seen: list[bool] = []
    net.layers["conv1"].register_forward_hook(
        lambda m, args, out: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    frames = torch.rand(3, *ATARI_HWC)
    net(frames)
    assert seen == [True]
    x = net.prepare_obs(frames)
    assert x.shape == (3, *ATARI) and x.data_ptr() == frames.data_ptr()  # a view of the batch


@pytest.mark.parametrize("execution", ["reference", "folded"])
def test_dsqn_runs_its_convs_channels_last_on_cpu(execution: str) -> None:
    """(H, W, C) frames are a view (no copy), (C, H, W) ones are converted once; every conv
    then reads channels-last memory, the spikes between them included."""
    for shape in (ATARI_HWC, ATARI):
        net = amplify(DSQN(shape, 6, T=2, execution=execution))
        seen: dict[str, list[bool]] = {}
        for name in ("conv1", "conv2", "conv3"):
            net.layers[name].register_forward_hook(
                lambda m, args, out, name=name, seen=seen: seen.setdefault(name, []).append(
                    args[0].is_contiguous(memory_format=torch.channels_last)
                )
            )
        net(torch.randint(0, 256, (3, *shape), dtype=torch.uint8))
        assert seen and all(all(v) for v in seen.values()), seen
    frames = torch.rand(3, *ATARI_HWC)
    x = DSQN(ATARI_HWC, 6, T=2).prepare_obs(frames)
    assert x.shape == (3, *ATARI) and x.data_ptr() == frames.data_ptr()


@pytest.mark.parametrize(
    "shape",
    [
        (84, 84),  # one frame, no stack axis
        (3, 10, 10),  # too small for the conv stack
        (4, 20, 20),
        (84, 84, 84),  # no small axis
        (17, 84, 84),  # more channels than a frame stack
        (84, 4, 84),  # channels in the middle
        (1, 4, 84, 84),
        (4, 84.0, 84),
    ],
)
@pytest.mark.parametrize("build", [DSQN, DQN, lambda s, n: build_q_network("dsqn", s, n)])
def test_a_shape_that_is_no_image_stack_is_one_line_naming_it_and_what_is_accepted(
    shape: tuple, build
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError) as info:
        build(shape, 6)
    assert str(info.value) == (
        f"obs_shape {shape!r} is not an image stack: give (C, H, W) or (H, W, C) with "
        f"C <= {MAX_IMAGE_CHANNELS} and H, W >= 36, or a 1-D vector (n,) for the MLP"
    )


def test_a_shape_both_layouts_fit_is_refused_as_ambiguous() -> None:
    # The Nature CNN needs H, W >= 36 > MAX_IMAGE_CHANNELS, so only a smaller stack can tie.
    tiny = (ConvSpec(8, 3, 1),)
    assert image_layout((4, 8, 20), tiny).channels_last is False
    with pytest.raises(ValueError) as info:
        image_layout((4, 8, 4), tiny)
    assert str(info.value).startswith("obs_shape (4, 8, 4) is ambiguous: give (C, H, W) or")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("model", [DSQN, DQN])
def test_a_channels_last_net_names_its_own_shape_when_given_the_other_layout(model: type) -> None:
    with pytest.raises(ValueError, match=r"observation shape \(2, 4, 84, 84\) does not match "):
        model(ATARI_HWC, 6)(torch.zeros(2, *ATARI))
