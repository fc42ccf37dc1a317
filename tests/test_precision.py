"""``precision="bf16"``: the decisions of fp32, the learner update in bf16 (snn/precision.py).

Measured on a DSQN whose every layer fires on real Pong frames (threshold-aware init on random
play, the frames of test_dsqn_learns). Timing is not asserted here: benchmarks/bench_core.py
prints the bf16 / fp32 update ratio side by side.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_dsqn_learns import (  # the DSQN-learns helpers and their recorded Pong play
    PROBE,
    RecordedPlay,
    _assert_awake,
    _fit_core,
    pong_play,  # noqa: F401 (a fixture)
)

from dsqn_rllib import DQN, DSQN
from dsqn_rllib.snn.networks import SpikingMLP, build_q_network
from dsqn_rllib.snn.optim import make_adam
from dsqn_rllib.snn.precision import (
    Precision,
    learner_update,
    parse_precision,
    resolve_precision,
)
from dsqn_rllib.snn.spike_init import threshold_aware_init_


@pytest.fixture(scope="module")
def firing_pair(pong_play: RecordedPlay) -> tuple[DSQN, DSQN]:  # noqa: F811
    """The same weights as an fp32 and a bf16 DSQN; every layer fires on the Pong frames."""
    torch.manual_seed(0)
    fp32 = DSQN(pong_play.obs_shape, pong_play.num_actions)
    threshold_aware_init_(fp32, pong_play.obs[:PROBE], target_rate=0.05)
    bf16 = DSQN(pong_play.obs_shape, pong_play.num_actions, precision="bf16")
    bf16.load_state_dict(fp32.state_dict())
    return fp32, bf16


def _greedy_and_rates(net: DSQN, obs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    q, stats = net(obs, return_stats=True)
    return q, {k: float(v) for k, v in stats.rates.items()}


def test_acting_in_bf16_mode_is_fp32_bit_for_bit(
    firing_pair: tuple[DSQN, DSQN],
    pong_play: RecordedPlay,  # noqa: F811
) -> None:
    fp32, bf16 = firing_pair
    obs = pong_play.obs[PROBE : 2 * PROBE]  # frames the calibration did not see
    with torch.no_grad():
        q32, rates32 = _greedy_and_rates(fp32, obs)
        q16, rates16 = _greedy_and_rates(bf16, obs)
    assert all(r > 0.01 for r in rates32.values()), rates32
    assert torch.equal(q16, q32) and rates16 == rates32  # agreement 100%, rates identical


def test_the_learner_forward_in_bf16_keeps_rates_and_most_greedy_actions(
    firing_pair: tuple[DSQN, DSQN],
    pong_play: RecordedPlay,  # noqa: F811
) -> None:
    """What the update fits: the bf16 network. Rates stay within 0.02 of fp32's; near-threshold
    spike flips cascade, so its greedy action is fp32's on most but not all frames (measured
    74% here; a plain bf16 forward: 51%)."""
    fp32, bf16 = firing_pair
    obs = pong_play.obs[PROBE : 2 * PROBE]
    with torch.no_grad():
        q32, rates32 = _greedy_and_rates(fp32, obs)
        with learner_update():
            q16, rates16 = _greedy_and_rates(bf16, obs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            q_plain, _ = _greedy_and_rates(fp32, obs)
    agree = float((q16.argmax(1) == q32.argmax(1)).float().mean())
    agree_plain = float((q_plain.argmax(1) == q32.argmax(1)).float().mean())
    print(f"learner-forward agreement {agree:.1%} (plain bf16 autocast {agree_plain:.1%})")
    assert max(abs(rates16[k] - rates32[k]) for k in rates32) < 0.02, (rates16, rates32)
    assert not torch.equal(q16, q32)  # the hidden layers did run in bf16
    assert agree > agree_plain and agree >= 0.6


def test_bf16_gradients_point_where_fp32_ones_do(
    firing_pair: tuple[DSQN, DSQN],
    pong_play: RecordedPlay,  # noqa: F811
) -> None:
    fp32, bf16 = firing_pair
    idx = torch.arange(32)
    grads = []
    for net in (fp32, bf16):
        q = net(pong_play.obs[idx]).gather(1, pong_play.actions[idx, None]).squeeze(1)
        loss = torch.nn.functional.mse_loss(q, pong_play.returns[idx])
        grads.append(torch.autograd.grad(loss, list(net.parameters())))
    for (name, p), g32, g16 in zip(fp32.named_parameters(), *grads, strict=True):
        assert g16.dtype == p.dtype == torch.float32, name  # fp32 master weights and grads
        cosine = torch.nn.functional.cosine_similarity(g16.flatten(), g32.flatten(), dim=0)
        assert cosine > 0.9, f"{name}: cosine {float(cosine):.3f}"


def test_the_dsqn_learns_fit_passes_in_bf16(pong_play: RecordedPlay) -> None:  # noqa: F811
    """test_dsqn_learns' core fit (default init, default optimizer) with precision="bf16"."""
    torch.manual_seed(0)
    net = DSQN(pong_play.obs_shape, pong_play.num_actions, precision="bf16")
    _assert_awake(_fit_core(net, pong_play), "core DSQN, precision bf16")


def _cartpole_return(precision: str, seed: int = 0, steps: int = 12_000) -> float:
    """A plain DQN loop (spiking MLP, T = 4) on CartPole; the mean greedy return of 5 episodes."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env = gym.make("CartPole-v1")
    net = SpikingMLP((4,), 2, hidden_sizes=(128, 128), T=4, precision=precision)
    target = SpikingMLP((4,), 2, hidden_sizes=(128, 128), T=4, precision=precision)
    target.load_state_dict(net.state_dict())
    optimizer = make_adam(net.parameters(), lr=1e-3, eps=1e-8)
    size = steps
    obs_buf = np.zeros((size, 4), np.float32)
    next_buf = np.zeros((size, 4), np.float32)
    act_buf = np.zeros(size, np.int64)
    rew_buf = np.zeros(size, np.float32)
    done_buf = np.zeros(size, np.float32)
    obs, _ = env.reset(seed=seed)
    for step in range(steps):
        epsilon = max(0.02, 1.0 - step / 5_000)
        if rng.random() < epsilon:
            action = int(rng.integers(2))
        else:
            with torch.no_grad():
                action = int(net(torch.as_tensor(obs)[None]).argmax(1))
        next_obs, reward, terminated, truncated, _ = env.step(action)
        obs_buf[step], next_buf[step], act_buf[step] = obs, next_obs, action
        rew_buf[step], done_buf[step] = reward, float(terminated)
        obs = env.reset()[0] if terminated or truncated else next_obs
        if step >= 500 and step % 2 == 0:
            idx = rng.integers(0, step + 1, 64)
            with learner_update(), torch.no_grad():
                bootstrap = target(torch.as_tensor(next_buf[idx])).amax(1)
            y = (
                torch.as_tensor(rew_buf[idx])
                + 0.99 * (1 - torch.as_tensor(done_buf[idx])) * bootstrap
            )
            q = net(torch.as_tensor(obs_buf[idx])).gather(1, torch.as_tensor(act_buf[idx])[:, None])
            loss = torch.nn.functional.mse_loss(q.squeeze(1), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if step % 500 == 0:
            target.load_state_dict(net.state_dict())
    returns = []
    for episode in range(5):
        obs, _ = env.reset(seed=1000 + episode)
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                action = int(net(torch.as_tensor(obs)[None]).argmax(1))
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated

        returns.append(total)
    env.close()
    return float(np.mean(returns))


@pytest.mark.slow
def test_cartpole_learns_in_bf16_as_in_fp32() -> None:
    """The same loop, seed and budget: bf16 learns CartPole as fp32 does (random level ~20)."""
    results = {p: _cartpole_return(p) for p in ("fp32", "bf16")}
    print(f"CartPole greedy return after 12k steps: {results}")
    assert results["fp32"] >= 100, results
    assert results["bf16"] >= 100 and results["bf16"] >= 0.5 * results["fp32"], results


def test_the_option_on_every_network_and_in_one_line_when_wrong() -> None:
    for net in (
        DSQN((4, 84, 84), 6, precision="bf16"),
        DQN((4, 84, 84), 6, precision="bf16"),
        build_q_network("dqn", (4, 84, 84), 6, precision="bf16"),
        build_q_network("dsqn", (8,), 2, precision="bf16"),
        build_q_network("dqn", (8,), 2, precision=Precision.BF16),
    ):
        assert net.precision is Precision.BF16
    assert DSQN((4, 84, 84), 6).precision is Precision.FP32  # the default
    with pytest.raises(ValueError, match=r"unknown precision 'fp16'; allowed: fp32, bf16, auto"):
        DQN((4, 84, 84), 6, precision="fp16")
    assert parse_precision("auto") is Precision.AUTO
    cpu = torch.device("cpu")
    assert resolve_precision(Precision.AUTO, cpu) in (Precision.FP32, Precision.BF16)
    assert resolve_precision(Precision.FP32, cpu) is Precision.FP32


def test_bf16_dqn_acts_in_fp32_and_learns_in_bf16() -> None:
    torch.manual_seed(0)
    fp32 = DQN((4, 84, 84), 6)
    bf16 = DQN((4, 84, 84), 6, precision="bf16")
    bf16.load_state_dict(fp32.state_dict())
    frames = torch.randint(0, 256, (4, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(bf16(frames), fp32(frames))
        with learner_update():
            learner = bf16(frames)
    assert not torch.equal(learner, fp32(frames).detach())
    torch.testing.assert_close(learner, fp32(frames).detach(), rtol=0.05, atol=0.05)
