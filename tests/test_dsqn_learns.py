"""A DSQN must wake up and learn on real Atari frames, through every path the product trains.

A fresh DSQN does not fire on Pong: its first conv's current stays below V_th with PyTorch's
default init (the authors' too), so the net has to wake through the surrogate gradient. These
tests fit Q(s, a) to the discounted return-to-go of recorded random Pong play with the
project's *default* optimizer, loss and batch size, on the spiking core, on the RLModule through
the new stack's real learner, and on the old stack's TorchModelV2 through its real policy, and
check that every LIF layer fires and Q comes to depend on the observation.

Terminal transitions make a DQN's TD target the reward itself, so a batch whose every transition
is terminal with reward = return-to-go trains each stack's own DQN loss as plain regression.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dsqn_rllib.config import TrainConfig
from dsqn_rllib.envs.atari import AtariConfig, make_atari_env
from dsqn_rllib.snn.networks import DSQN, SpikingQNetwork
from dsqn_rllib.snn.optim import make_adam
from dsqn_rllib.snn.spike_init import threshold_aware_init_

GAMMA = 0.99
PROBE = 256  # frames the rates and Q's spread are measured on
MAX_UPDATES = 300
CHECK_EVERY = 10
MIN_Q_SPREAD = 0.02  # std of max_a Q over the probe frames (the targets' std is ~0.9)


@dataclass
class RecordedPlay:
    obs: torch.Tensor  # (N, 4, 84, 84) uint8, the training protocol's observations
    actions: torch.Tensor  # (N,) int64
    returns: torch.Tensor  # (N,) float32: discounted return-to-go, cut at episode ends
    num_actions: int
    obs_shape: tuple[int, ...]


@pytest.fixture(scope="module")
def pong_play() -> RecordedPlay:
    """1,024 steps of uniformly random Pong (ale-py, the DQN training protocol, seed 0)."""
    env = make_atari_env(AtariConfig("pong"), seed=0)
    rng = np.random.default_rng(0)
    obs, _ = env.reset()
    frames, actions, rewards, ends = [], [], [], []
    for _ in range(1024):
        action = int(rng.integers(env.action_space.n))
        frames.append(obs)
        actions.append(action)
        obs, reward, terminated, truncated, _ = env.step(action)
        rewards.append(float(reward))
        ends.append(terminated or truncated)
        if terminated or truncated:
            obs, _ = env.reset()
    returns = np.zeros(len(rewards), np.float32)
    future = 0.0
    for i in reversed(range(len(rewards))):
        future = rewards[i] + GAMMA * future * (not ends[i])
        returns[i] = future
    assert sum(r != 0 for r in rewards) >= 5, "the recording should hold some points"
    env.close()
    return RecordedPlay(
        torch.as_tensor(np.stack(frames)),
        torch.as_tensor(actions),
        torch.as_tensor(returns),
        # numpy's integer and shape, as gymnasium gives them (the models must take both).
        env.action_space.n,
        env.observation_space.shape,
    )


@dataclass
class WakeResult:
    updates: int  # updates taken until every layer fired and Q varied (or MAX_UPDATES)
    rates: dict[str, float]
    q_spread: float


def _probe(net: SpikingQNetwork, play: RecordedPlay) -> tuple[dict[str, float], float]:
    with torch.no_grad():
        q, stats = net(play.obs[:PROBE], return_stats=True)
    return {k: float(v) for k, v in stats.rates.items()}, float(q.max(1).values.std())


def _awake(rates: dict[str, float], q_spread: float) -> bool:
    return all(r > 0 for r in rates.values()) and q_spread >= MIN_Q_SPREAD


def _train_until_awake(
    net: SpikingQNetwork, play: RecordedPlay, update: Callable[[torch.Tensor], None]
) -> WakeResult:
    """Call ``update(batch_indices)`` until the network is awake, at most MAX_UPDATES times."""
    batch = TrainConfig().train_batch_size
    generator = torch.Generator().manual_seed(0)
    for step in range(1, MAX_UPDATES + 1):
        update(torch.randint(len(play.obs), (batch,), generator=generator))
        if step % CHECK_EVERY == 0:
            rates, spread = _probe(net, play)
            if _awake(rates, spread):
                return WakeResult(step, rates, spread)
    return WakeResult(MAX_UPDATES, *_probe(net, play))


def _fit_core(net: SpikingQNetwork, play: RecordedPlay) -> WakeResult:
    """The project's defaults on the bare core: Adam(lr, eps) as the learner builds it, MSE."""
    cfg = TrainConfig()
    assert cfg.loss == "mse"
    optimizer = make_adam(net.parameters(), lr=cfg.lr, eps=cfg.adam_eps)

    def update(idx: torch.Tensor) -> None:
        q = net(play.obs[idx]).gather(1, play.actions[idx, None]).squeeze(1)
        loss = torch.nn.functional.mse_loss(q, play.returns[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return _train_until_awake(net, play, update)


def _assert_awake(result: WakeResult, what: str) -> None:
    print(f"{what}: {result.updates} updates, rates {result.rates}, Q spread {result.q_spread:.3f}")
    assert _awake(result.rates, result.q_spread), (
        f"{what}: after {result.updates} updates rates {result.rates}, "
        f"Q spread {result.q_spread:.4f} (needs every rate > 0 and spread >= {MIN_Q_SPREAD})"
    )


def _terminal_batch(play: RecordedPlay, idx: torch.Tensor) -> Any:
    """Transitions ``idx`` as all-terminal with reward = return-to-go: DQN's TD target is then
    the return itself (RLlib's Columns and the old stack's SampleBatch share these keys)."""
    from ray.rllib.policy.sample_batch import SampleBatch

    n = len(idx)
    obs = play.obs[idx].numpy()
    return SampleBatch({
        SampleBatch.OBS: obs,
        SampleBatch.NEXT_OBS: obs,
        SampleBatch.ACTIONS: play.actions[idx].numpy(),
        SampleBatch.REWARDS: play.returns[idx].numpy(),
        SampleBatch.TERMINATEDS: np.ones(n, bool),
        SampleBatch.TRUNCATEDS: np.zeros(n, bool),
        "weights": np.ones(n, np.float32),
    })  # fmt: skip


def test_a_fresh_dsqn_is_silent_on_real_pong_frames(pong_play: RecordedPlay) -> None:
    """The premise: the encoder's current stays below V_th, so nothing fires and Q is constant."""
    torch.manual_seed(0)
    net = DSQN(pong_play.obs_shape, pong_play.num_actions)
    with torch.no_grad():
        current = net.layers["conv1"](pong_play.obs[:PROBE].float() / 255)
    assert current.max() < net.config.v_threshold
    rates, spread = _probe(net, pong_play)
    assert all(r == 0 for r in rates.values()) and spread < 1e-6  # float noise only


@pytest.fixture(scope="module")
def core_fit(pong_play: RecordedPlay) -> WakeResult:
    """The default-initialised core DSQN (seed 0) fitted with the default optimizer."""
    torch.manual_seed(0)
    net = DSQN(pong_play.obs_shape, pong_play.num_actions)  # numpy n and shape, as gymnasium's
    return _fit_core(net, pong_play)


def test_core_dsqn_wakes_and_fits_with_the_default_optimizer(core_fit: WakeResult) -> None:
    _assert_awake(core_fit, "core DSQN")


def test_rl_module_wakes_through_the_new_stacks_learner(pong_play: RecordedPlay) -> None:
    """The RLModule and its learner as ``dsqn train`` builds them (optimizer, loss, batch)."""
    import gymnasium as gym
    from ray.rllib.core import DEFAULT_MODULE_ID
    from ray.rllib.policy.sample_batch import MultiAgentBatch

    from dsqn_rllib.rllib.builder import build_algorithm_config

    torch.manual_seed(0)
    cfg = TrainConfig(game="pong", num_env_runners=0).validate()
    config = build_algorithm_config(cfg)
    obs_space = gym.spaces.Box(0, 255, pong_play.obs_shape, np.uint8)
    spaces = {DEFAULT_MODULE_ID: (obs_space, gym.spaces.Discrete(pong_play.num_actions))}
    learner = config.build_learner(env=None, spaces=spaces)
    learner.build()
    module = learner.module[DEFAULT_MODULE_ID]
    (adam,) = [learner.get_optimizer()]
    assert adam.defaults["eps"] == cfg.adam_eps and adam.param_groups[0]["lr"] == cfg.lr
    assert config.td_error_loss_fn == cfg.loss and config.train_batch_size == cfg.train_batch_size

    def update(idx: torch.Tensor) -> None:
        n = len(idx)
        batch = _terminal_batch(pong_play, idx)
        batch["n_step"] = np.ones(n, np.int64)
        learner.update(
            batch=MultiAgentBatch({DEFAULT_MODULE_ID: batch}, n),
            timesteps={"num_env_steps_sampled_lifetime": cfg.learning_starts},
        )

    result = _train_until_awake(module.net, pong_play, update)
    _assert_awake(result, "RLModule + FusedAdamDQNLearner")


def test_torch_model_v2_wakes_through_the_old_stacks_policy(pong_play: RecordedPlay) -> None:
    """The registered TorchModelV2 under old-stack DQN's own policy, loss and optimizer."""
    import gymnasium as gym
    from ray.rllib.algorithms.dqn.dqn_torch_policy import DQNTorchPolicy

    from dsqn_rllib.rllib.old_stack import build_old_stack_config

    torch.manual_seed(0)
    cfg = TrainConfig(game="pong", api_stack="old").validate()
    config = build_old_stack_config(cfg)
    obs_space = gym.spaces.Box(0, 255, pong_play.obs_shape, np.uint8)
    policy = DQNTorchPolicy(obs_space, gym.spaces.Discrete(pong_play.num_actions), config.to_dict())
    assert type(policy.model.net).__name__ == "DSQN"
    (adam,) = policy._optimizers
    assert adam.defaults["eps"] == cfg.adam_eps and adam.param_groups[0]["lr"] == cfg.lr

    def update(idx: torch.Tensor) -> None:
        policy.learn_on_batch(_terminal_batch(pong_play, idx))

    result = _train_until_awake(policy.model.net, pong_play, update)
    _assert_awake(result, "TorchModelV2 + DQNTorchPolicy")


def test_threshold_aware_init_fires_from_the_start_and_wakes_sooner(
    pong_play: RecordedPlay, core_fit: WakeResult
) -> None:
    """The option beyond the paper, side by side with the default (``core_fit``: the same
    seed, so the same initial weights before calibration) on the same fit."""
    torch.manual_seed(0)
    calibrated = DSQN(pong_play.obs_shape, pong_play.num_actions)
    gains = threshold_aware_init_(calibrated, pong_play.obs[:PROBE], target_rate=0.05)
    assert gains["conv1"] > 1.0  # the default init was below threshold
    rates, _ = _probe(calibrated, pong_play)
    assert all(r >= 0.05 for r in rates.values()), rates
    woke = _fit_core(calibrated, pong_play)
    _assert_awake(woke, "threshold-aware init")
    print(f"updates to wake: default {core_fit.updates}, threshold-aware {woke.updates}")
    assert woke.updates < core_fit.updates


@pytest.mark.slow
def test_dsqn_train_spike_init_threshold_aware_acts_with_a_firing_net(tmp_path: Path) -> None:
    """``dsqn train --spike-init threshold-aware``: the runners' first inferences (before any
    update) already fire in every layer; the default init's are silent."""
    import json
    import os
    import subprocess
    import sys

    rates = {}
    for init in ("default", "threshold-aware"):
        args = [
            "train", "--game", "pong", "--num-env-runners", "0", "--envs-per-runner", "2",
            # No update at all in the run (its first iteration may overshoot total-steps).
            "--total-steps", "200", "--learning-starts", "100000", "--buffer-size", "2000",
            "--eval-interval", "0", "--checkpoint-interval", "0", "--spike-init", init,
            "--run-dir", str(tmp_path), "--run-id", init,
        ]  # fmt: skip
        proc = subprocess.run(
            [sys.executable, "-m", "dsqn_rllib.cli", *args],
            capture_output=True, text=True, timeout=600,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        reports = (tmp_path / init / "metrics.jsonl").read_text().splitlines()
        first = json.loads(reports[0])
        assert first["updates"] == 0  # no gradient has touched the weights yet
        rates[init] = first["firing_rates"]
    assert all(r == 0 for r in rates["default"].values()), rates
    assert all(r > 0.01 for r in rates["threshold-aware"].values()), rates


@pytest.fixture(scope="module")
def firing_dsqn(pong_play: RecordedPlay) -> dict[str, torch.Tensor]:
    """Weights of a DSQN whose every LIF layer fires at about 0.1 on the recorded frames."""
    torch.manual_seed(0)
    net = DSQN(pong_play.obs_shape, pong_play.num_actions)
    threshold_aware_init_(net, pong_play.obs[:64], target_rate=0.1, steps=6)
    return net.state_dict()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fused_lif_kernels_compute_what_the_torch_ops_do_on_real_pong_frames(
    pong_play: RecordedPlay, firing_dsqn: dict[str, torch.Tensor], precision: str
) -> None:
    """The CPU learner's LIF layers run as fused numba kernels (dsqn_rllib.snn.lif_kernels);
    on a net whose every layer fires, they give the torch ops' spikes, Q-values and greedy
    actions exactly (the same float32 arithmetic) and their gradients to rounding. In a bf16
    update they read bf16 currents and gradients and write bf16 spikes and gradients
    themselves, where the torch ops need conversions around them: the same numbers."""
    from dsqn_rllib.snn import lif_kernels

    assert lif_kernels.enabled(), "numba is a dependency: the fused kernels must be in use"
    net = DSQN(pong_play.obs_shape, pong_play.num_actions, precision=precision)
    net.load_state_dict(firing_dsqn)
    obs, actions = pong_play.obs[:128], pong_play.actions[:128]

    def forward_backward() -> tuple[torch.Tensor, dict[str, float], dict[str, torch.Tensor]]:
        net.zero_grad()
        q, stats = net(obs, return_stats=True)
        q.gather(1, actions[:, None]).sum().backward()
        grads = {name: p.grad.clone() for name, p in net.named_parameters()}
        return q.detach(), {k: float(v) for k, v in stats.rates.items()}, grads

    q_fused, rates_fused, grads_fused = forward_backward()
    with lif_kernels.torch_ops_only():
        q_torch, rates_torch, grads_torch = forward_backward()
    print(f"rates {rates_fused}")
    assert all(rate > 0.01 for rate in rates_fused.values())  # every layer fires
    assert rates_fused == rates_torch
    assert torch.equal(q_fused, q_torch)
    # bf16 weight gradients come out of oneDNN's bf16 convs rounded to bf16 (2^-8 apart):
    # the two runs may differ there by an ulp of the accumulation order, no more.
    rtol = 1e-4 if precision == "fp32" else 1e-2
    for name, grad in grads_torch.items():
        assert grad.abs().sum() > 0, name
        atol = 1e-6 if precision == "fp32" else 1e-2 * float(grad.abs().max())
        torch.testing.assert_close(grads_fused[name], grad, rtol=rtol, atol=atol, msg=name)
