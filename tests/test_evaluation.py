"""The evaluation protocol, run on real Gymnasium and ale-py envs (no mocks)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dsqn_rllib.envs.atari import AtariConfig, make_atari_vector_env, num_actions
from dsqn_rllib.evaluation.protocol import (
    EvalConfig,
    EvalResult,
    FrameSampler,
    evaluate,
    is_gymnasium_env,
    record_episode_gif,
)
from dsqn_rllib.snn.networks import DQN

CARTPOLE = "CartPole-v1"
CARTPOLE_MAX_STEPS = 500  # CartPole-v1's time limit
BREAKOUT_FIRE = 1


class UprightPolicy(nn.Module):
    """Push the cart towards where the pole leans: Q = [-(θ + θ'), θ + θ'] (left, right)."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        lean = obs[:, 2] + obs[:, 3]
        return torch.stack([-lean, lean], dim=1).float()


class AngleOnlyPolicy(nn.Module):
    """A weaker controller (ignores θ'): its episodes have varied lengths."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.stack([-obs[:, 2], obs[:, 2]], dim=1).float()


class ConstantPolicy(nn.Module):
    """Always prefers ``action`` of ``num_actions``."""

    def __init__(self, action: int, num_actions: int) -> None:
        super().__init__()
        self.action, self.num_actions = action, num_actions

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        q = torch.zeros(len(obs), self.num_actions)
        q[:, self.action] = 1.0
        return q


def test_evaluation_does_not_import_ray() -> None:
    code = (
        "import sys, dsqn_rllib.evaluation.protocol; "
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------------------------
# EvalConfig and EvalResult


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("episodes", 0),
        ("episodes", 2.0),
        ("epsilon", -0.1),
        ("epsilon", 1.5),
        ("epsilon", True),
        ("seed", -1),
        ("max_episode_frames", 0),
        ("num_envs", 0),
        ("num_envs", "4"),
    ],
)
def test_eval_config_rejects_bad_values_in_one_line(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"EvalConfig.{field}") as error:
        EvalConfig(**{field: value})
    assert "\n" not in str(error.value)


def test_eval_config_defaults_are_the_paper_protocol() -> None:
    config = EvalConfig()
    assert (config.episodes, config.epsilon, config.max_episode_frames) == (30, 0.05, 108_000)
    assert config.resolved_num_envs == 8
    assert EvalConfig(episodes=3).resolved_num_envs == 3
    assert EvalConfig(episodes=3, num_envs=16).resolved_num_envs == 3


def test_quotas_split_the_episodes_evenly() -> None:
    assert EvalConfig(episodes=5, num_envs=2).quotas() == [3, 2]
    assert EvalConfig(episodes=30).quotas() == [4] * 6 + [3] * 2
    assert sum(EvalConfig(episodes=7, num_envs=3).quotas()) == 7


def test_eval_result_statistics() -> None:
    result = EvalResult((1.0, 3.0, 8.0), (10, 20, 30))
    assert (result.num_episodes, result.mean, result.max, result.min) == (3, 4.0, 8.0, 1.0)
    assert result.std == pytest.approx(np.std([1.0, 3.0, 8.0]))
    summary = result.to_dict()
    assert summary["returns"] == [1.0, 3.0, 8.0] and summary["mean_length"] == 20.0
    with pytest.raises(ValueError, match="one length per return"):
        EvalResult((1.0,), (1, 2))


def test_gymnasium_ids_are_told_from_atari_games() -> None:
    assert is_gymnasium_env(CARTPOLE)
    for atari_name in ("pong", "ALE/Pong-v5", "PongNoFrameskip-v4", "SpaceInvaders"):
        assert not is_gymnasium_env(atari_name)


def test_unknown_env_fails_in_one_line() -> None:
    with pytest.raises(ValueError, match="unknown game 'NotAnEnv-v0'"):
        evaluate(UprightPolicy(), "NotAnEnv-v0", EvalConfig(episodes=1))


def test_wrong_number_of_q_values_fails_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"Q of shape \(1, 3\), expected \(1, 2\)"):
        evaluate(ConstantPolicy(0, 3), CARTPOLE, EvalConfig(episodes=1))


# ----------------------------------------------------------------------------------------------
# Gymnasium (CartPole)


def test_evaluate_runs_the_policy() -> None:
    good = evaluate(UprightPolicy(), CARTPOLE, EvalConfig(episodes=8))
    bad = evaluate(ConstantPolicy(0, 2), CARTPOLE, EvalConfig(episodes=8))
    assert good.num_episodes == bad.num_episodes == 8
    assert good.mean > 150
    assert bad.mean < 30


def test_every_step_of_an_episode_is_counted_once() -> None:
    # CartPole pays 1 per step: a counted autoreset step (reward 0) would break returns ==
    # lengths, and a truncated episode would be longer than the time limit.
    for net in (UprightPolicy(), ConstantPolicy(1, 2)):
        result = evaluate(net, CARTPOLE, EvalConfig(episodes=6, num_envs=2, epsilon=0.0))
        assert result.returns == tuple(float(n) for n in result.lengths)
        assert max(result.lengths) <= CARTPOLE_MAX_STEPS
    assert CARTPOLE_MAX_STEPS in evaluate(UprightPolicy(), CARTPOLE, EvalConfig(10)).lengths


def test_each_env_plays_exactly_its_quota() -> None:
    config = EvalConfig(episodes=5, num_envs=2, epsilon=0.0, seed=3)
    both = evaluate(AngleOnlyPolicy(), CARTPOLE, config)
    assert both.num_episodes == 5
    # Env 0 (seed 3) plays the first 3, env 1 (seed 4) the last 2, whatever their lengths:
    # the same episodes as one env of each seed playing its quota alone.
    # (With epsilon > 0 the envs would share one stream of random draws: compare greedy runs.)
    env0 = evaluate(
        AngleOnlyPolicy(), CARTPOLE, EvalConfig(episodes=3, num_envs=1, epsilon=0.0, seed=3)
    )
    env1 = evaluate(
        AngleOnlyPolicy(), CARTPOLE, EvalConfig(episodes=2, num_envs=1, epsilon=0.0, seed=4)
    )
    assert both.lengths == env0.lengths + env1.lengths
    assert len(set(both.lengths)) > 1  # the lengths differ, so first-to-finish would reorder


def test_same_seed_same_returns() -> None:
    config = EvalConfig(episodes=6, num_envs=3, epsilon=0.3, seed=7)
    first = evaluate(AngleOnlyPolicy(), CARTPOLE, config)
    assert evaluate(AngleOnlyPolicy(), CARTPOLE, config) == first
    other_seed = EvalConfig(episodes=6, num_envs=3, epsilon=0.3, seed=8)
    assert evaluate(AngleOnlyPolicy(), CARTPOLE, other_seed).returns != first.returns


def test_epsilon_one_is_the_random_policy() -> None:
    config = EvalConfig(episodes=10, epsilon=1.0, seed=1)
    upright = evaluate(UprightPolicy(), CARTPOLE, config)
    constant = evaluate(ConstantPolicy(0, 2), CARTPOLE, config)
    assert upright.returns == constant.returns  # the net's choice never matters
    assert 10 < upright.mean < 40  # a random CartPole policy lasts about 22 steps


def test_evaluate_restores_the_net_mode_and_torch_threads() -> None:
    net = UprightPolicy().train()
    threads = torch.get_num_threads()
    evaluate(net, CARTPOLE, EvalConfig(episodes=1), torch_threads=1)
    assert net.training
    assert torch.get_num_threads() == threads


# ----------------------------------------------------------------------------------------------
# Atari


def test_dqn_on_pong_with_a_frame_cap() -> None:
    torch.manual_seed(0)
    net = DQN((4, 84, 84), num_actions("pong"))
    config = EvalConfig(episodes=2, max_episode_frames=2_000)
    result = evaluate(net, "pong", config)
    assert result.num_episodes == 2
    # Truncated by the cap: 2000 emulator frames = 500 agent steps at frame skip 4.
    assert result.lengths == (500, 500)
    assert all(-21 <= r <= 21 for r in result.returns)
    assert evaluate(net, "ALE/Pong-v5", config) == result  # seeded, by any name


def test_atari_rewards_are_not_clipped() -> None:
    # Space Invaders pays 5..30 per alien: every unclipped return is a multiple of 5 and a
    # random player's exceeds the number of aliens it can hit in 500 steps (its clipped return).
    torch.manual_seed(0)
    net = DQN((4, 84, 84), num_actions("space_invaders"))
    config = EvalConfig(episodes=2, epsilon=1.0, max_episode_frames=2_000)
    result = evaluate(net, "space_invaders", config)
    assert all(r % 5 == 0 for r in result.returns)
    assert result.max > 36


def test_an_atari_episode_is_a_whole_game() -> None:
    # Always FIRE in Breakout: the ball is served at once and lost every ~24 steps.
    config = EvalConfig(episodes=2, epsilon=0.0)
    result = evaluate(ConstantPolicy(BREAKOUT_FIRE, 4), "breakout", config)
    # The training protocol ends the episode on the first lost life.
    training = make_atari_vector_env(AtariConfig("breakout"), 1, seed=0)
    first_life = 1
    while not training.step(np.array([BREAKOUT_FIRE]))[2][0]:
        first_life += 1
    training.close()
    # Breakout has 5 lives: the evaluation episode goes on after the first is lost.
    assert min(result.lengths) > 4 * first_life


# ----------------------------------------------------------------------------------------------
# Recording


def test_frame_sampler_keeps_evenly_spaced_frames() -> None:
    sampler = FrameSampler(10)
    for i in range(100):
        sampler.add(np.array(i))
    kept = [int(frame) for frame in sampler.frames]
    assert kept[0] == 0 and 5 <= len(kept) <= 10
    assert len(set(np.diff(kept))) == 1  # one stride


def test_record_episode_gif_writes_an_animation(tmp_path) -> None:
    path = tmp_path / "breakout.gif"
    result = record_episode_gif(
        ConstantPolicy(BREAKOUT_FIRE, 4), "breakout", path, epsilon=0.0, max_gif_frames=50
    )
    assert result.num_episodes == 1 and result.lengths[0] > 1
    with Image.open(path) as gif:
        assert gif.format == "GIF"
        assert gif.size == (160, 210)  # the full Atari screen, not the 84x84 observation
        assert 1 < gif.n_frames <= 50
