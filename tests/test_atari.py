"""Tests of dsqn_rllib.envs.atari against the real ale-py emulator (no mocks)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
from ale_py.registration import rom_id_to_name
from ale_py.vector_env import AtariVectorEnv

from dsqn_rllib.envs.atari import (
    ALL_ROM_IDS,
    EVAL_MAX_EPISODE_FRAMES,
    PAPER_GAMES,
    AtariConfig,
    env_id,
    make_atari_env,
    make_atari_vector_env,
    num_actions,
    resolve_game,
)

# Pong without no-op starts or FIRE: every reset starts from the same emulator state.
DETERMINISTIC_PONG = AtariConfig("pong", noop_max=0, fire_reset=False)


def _random_rollout(env: gym.Env, steps: int, seed: int) -> list[float]:
    """Rewards of ``steps`` uniformly random actions, resetting when an episode ends."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    rewards = []
    for _ in range(steps):
        _, reward, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        rewards.append(float(reward))
        if terminated or truncated:
            env.reset()
    return rewards


# ---------------------------------------------------------------------------------------------
# Game names


def test_paper_lists_seventeen_games_by_rom_id() -> None:
    assert len(PAPER_GAMES) == 17
    for short, gym_id in PAPER_GAMES.items():
        assert short in ALL_ROM_IDS
        assert gym_id == f"ALE/{rom_id_to_name(short)}-v5" == env_id(short)
        assert gym_id in gym.registry


@pytest.mark.parametrize("short", sorted(PAPER_GAMES))
def test_paper_game_resolves_and_both_envs_build(short: str) -> None:
    config = AtariConfig(PAPER_GAMES[short], noop_max=2)
    assert config.game == short == resolve_game(short)
    env = make_atari_env(config)
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert env.action_space.n == num_actions(short)
    env.close()
    vector = make_atari_vector_env(config, 1, seed=0)
    assert vector.single_action_space.n == num_actions(short)
    vector.close()


@pytest.mark.parametrize(
    ("name", "rom"),
    [
        ("pong", "pong"),
        ("  pong ", "pong"),
        ("SpaceInvaders", "space_invaders"),
        ("space_invaders", "space_invaders"),
        ("ALE/Pong-v5", "pong"),
        ("PongNoFrameskip-v4", "pong"),
        ("BreakoutDeterministic-v4", "breakout"),
        ("Breakout-v0", "breakout"),
        ("MsPacman", "ms_pacman"),
        ("ALE/MontezumaRevenge-v5", "montezuma_revenge"),
        ("TicTacToe3D", "tic_tac_toe_3d"),
        ("JamesBond", "jamesbond"),
    ],
)
def test_resolve_game_accepts_rom_camel_case_and_env_ids(name: str, rom: str) -> None:
    assert resolve_game(name) == rom


def test_every_ale_rom_resolves_from_its_own_names() -> None:
    assert len(ALL_ROM_IDS) > 100
    for rom in ALL_ROM_IDS:
        camel = rom_id_to_name(rom)
        assert resolve_game(rom) == resolve_game(camel) == resolve_game(f"ALE/{camel}-v5") == rom


@pytest.mark.parametrize(
    ("name", "closest"),
    [("pongg", "pong"), ("SpaceInvader", "space_invaders"), ("ALE/Breakot-v5", "breakout")],
)
def test_unknown_game_names_the_closest_in_one_line(name: str, closest: str) -> None:
    with pytest.raises(ValueError) as error:
        resolve_game(name)
    message = str(error.value)
    assert "\n" not in message
    assert repr(name) in message
    assert f"closest: {closest}" in message
    assert "PAPER_GAMES" in message


@pytest.mark.parametrize("name", ["", "ALE/-v5", 42])
def test_empty_or_non_string_game_is_rejected(name: object) -> None:
    with pytest.raises(ValueError, match="game"):
        resolve_game(name)  # type: ignore[arg-type]


def test_num_actions_minimal_and_full() -> None:
    assert num_actions("pong") == 6
    assert num_actions("Breakout") == 4
    assert num_actions("breakout", full_action_space=True) == 18
    env = make_atari_env(AtariConfig("breakout", full_action_space=True))
    assert env.action_space.n == 18


# ---------------------------------------------------------------------------------------------
# AtariConfig


def test_config_defaults_are_the_dqn_protocol() -> None:
    config = AtariConfig("SpaceInvaders")
    assert config.game == "space_invaders"
    assert (config.noop_max, config.frame_skip, config.screen_size, config.frame_stack) == (
        30,
        4,
        84,
        4,
    )
    assert config.grayscale and config.terminal_on_life_loss and config.clip_rewards
    assert config.fire_reset and not config.full_action_space
    assert config.sticky_action_prob == 0.0
    assert config.max_episode_frames == 108_000
    assert config.observation_shape == (4, 84, 84)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"noop_max": -1}, "noop_max"),
        ({"noop_max": True}, "noop_max"),
        ({"frame_skip": 0}, "frame_skip"),
        ({"frame_skip": 4.0}, "frame_skip"),
        ({"screen_size": 0}, "screen_size"),
        ({"frame_stack": 0}, "frame_stack"),
        ({"max_episode_frames": 0}, "max_episode_frames"),
        ({"sticky_action_prob": 1.5}, "sticky_action_prob"),
        ({"sticky_action_prob": -0.1}, "sticky_action_prob"),
        ({"sticky_action_prob": "0.25"}, "sticky_action_prob"),
        ({"clip_rewards": 1}, "clip_rewards"),
        ({"terminal_on_life_loss": "no"}, "terminal_on_life_loss"),
        ({"game": "pongg"}, "closest: pong"),
    ],
)
def test_config_rejects_bad_values_in_one_line(fields: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError) as error:
        AtariConfig(**fields)  # type: ignore[arg-type]
    assert named in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("prob", [0.0, 0.25, 1.0, 1])
def test_config_accepts_sticky_probabilities_in_unit_interval(prob: float) -> None:
    assert AtariConfig(sticky_action_prob=prob).sticky_action_prob == prob


def test_evaluation_variant_is_the_paper_protocol() -> None:
    train = AtariConfig("breakout", sticky_action_prob=0.25, max_episode_frames=4_000)
    evaluation = train.for_evaluation()
    assert not evaluation.terminal_on_life_loss
    assert not evaluation.clip_rewards
    assert evaluation.max_episode_frames == EVAL_MAX_EPISODE_FRAMES == 108_000
    unchanged = ("game", "noop_max", "frame_skip", "frame_stack", "sticky_action_prob")
    for name in unchanged:
        assert getattr(evaluation, name) == getattr(train, name)
    assert train.terminal_on_life_loss and train.clip_rewards  # the original is untouched
    assert train.for_evaluation(max_episode_frames=400).max_episode_frames == 400
    with pytest.raises(dataclasses.FrozenInstanceError):
        train.clip_rewards = False  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# make_atari_env


@pytest.mark.parametrize(
    "config",
    [
        AtariConfig("breakout"),
        AtariConfig("breakout", grayscale=False),
        AtariConfig("breakout", screen_size=64, frame_stack=2, frame_skip=3),
    ],
)
def test_single_env_observation_layout(config: AtariConfig) -> None:
    env = make_atari_env(config, seed=1)
    obs, _ = env.reset()
    assert obs.shape == config.observation_shape == env.observation_space.shape
    assert obs.dtype == np.uint8 == env.observation_space.dtype
    obs, *_ = env.step(1)
    assert obs.shape == config.observation_shape and obs.dtype == np.uint8
    assert obs[-1].any()  # the newest frame is the screen, not padding


def test_single_env_frame_stack_shifts_and_zero_pads() -> None:
    env = make_atari_env(DETERMINISTIC_PONG)
    first, _ = env.reset(seed=0)
    assert not first[:-1].any() and first[-1].any()  # zeros before the episode's first frame
    second, *_ = env.step(0)
    np.testing.assert_array_equal(second[-2], first[-1])


def test_training_clips_rewards_and_evaluation_keeps_them() -> None:
    train = AtariConfig("space_invaders")
    train_rewards = _random_rollout(make_atari_env(train), steps=300, seed=0)
    eval_rewards = _random_rollout(make_atari_env(train.for_evaluation()), steps=300, seed=0)
    assert set(train_rewards) <= {-1.0, 0.0, 1.0}
    assert 1.0 in train_rewards
    assert max(eval_rewards) > 1.0  # Space Invaders scores 5..30 per invader


def test_training_ends_episode_on_life_loss_but_continues_the_game() -> None:
    env = make_atari_env(AtariConfig("breakout"), seed=0)
    env.reset()
    ale = env.unwrapped.ale
    assert ale.lives() == 5
    rng = np.random.default_rng(0)
    for _ in range(2_000):
        _, _, terminated, truncated, info = env.step(int(rng.integers(4)))
        if terminated or truncated:
            break
    assert terminated and not truncated
    assert info["lives"] == ale.lives() == 4
    frames_before = ale.getEpisodeFrameNumber()
    env.reset()
    assert ale.lives() == 4  # the game went on: it was not restarted
    assert ale.getEpisodeFrameNumber() > frames_before


def test_evaluation_does_not_end_episode_on_life_loss() -> None:
    env = make_atari_env(AtariConfig("breakout").for_evaluation(), seed=0)
    env.reset()
    ale = env.unwrapped.ale
    rng = np.random.default_rng(0)
    for _ in range(2_000):
        _, _, terminated, truncated, _ = env.step(int(rng.integers(4)))
        if ale.lives() < 5 or terminated or truncated:
            break
    assert ale.lives() == 4
    assert not terminated and not truncated


def test_episode_cap_counts_emulator_frames() -> None:
    env = make_atari_env(dataclasses.replace(DETERMINISTIC_PONG, max_episode_frames=100))
    env.reset(seed=0)
    steps = 0
    terminated = truncated = False
    while not (terminated or truncated) and steps < 100:
        *_, terminated, truncated, _ = env.step(0)
        steps += 1
    assert truncated and not terminated
    assert steps == 100 // 4  # 100 frames at frame skip 4, not 100 agent steps


def test_noop_starts_vary_the_first_frame_of_episodes() -> None:
    env = make_atari_env(AtariConfig("pong", fire_reset=False))
    start_frames = set()
    for seed in range(8):
        env.reset(seed=seed)
        start_frames.add(env.unwrapped.ale.getEpisodeFrameNumber())
    assert len(start_frames) > 1 and max(start_frames) <= 30
    env = make_atari_env(DETERMINISTIC_PONG)
    for seed in range(3):
        env.reset(seed=seed)
        assert env.unwrapped.ale.getEpisodeFrameNumber() == 0


def test_seeded_envs_replay_identically() -> None:
    config = AtariConfig("breakout", sticky_action_prob=0.25)
    envs = [make_atari_env(config, seed=3) for _ in range(2)]
    observations = [env.reset()[0] for env in envs]
    np.testing.assert_array_equal(*observations)
    for action in np.random.default_rng(0).integers(4, size=50):
        steps = [env.step(int(action)) for env in envs]
        np.testing.assert_array_equal(steps[0][0], steps[1][0])
        assert steps[0][1:4] == steps[1][1:4]


def test_multiplayer_only_rom_is_rejected_for_the_single_env() -> None:
    with pytest.raises(ValueError, match="single-player"):
        make_atari_env(AtariConfig("combat"))


# ---------------------------------------------------------------------------------------------
# make_atari_vector_env


def test_vector_env_layout_and_stepping() -> None:
    config = AtariConfig("space_invaders")
    env = make_atari_vector_env(config, 4, seed=0)
    assert env.num_envs == 4
    assert env.single_observation_space.shape == (4, 84, 84)
    obs, info = env.reset(seed=0)
    assert obs.shape == (4, 4, 84, 84) and obs.dtype == np.uint8
    assert set(info) >= {"lives", "episode_frame_number"}
    rewards = []
    for _ in range(100):
        actions = env.action_space.sample()
        obs, reward, terminated, truncated, _ = env.step(actions)
        assert obs.shape == (4, 4, 84, 84) and obs.dtype == np.uint8
        assert reward.shape == terminated.shape == truncated.shape == (4,)
        rewards.append(reward)
    assert set(np.concatenate(rewards).tolist()) <= {-1, 0, 1}
    assert np.concatenate(rewards).max() == 1
    env.close()


def test_vector_env_honours_frame_stack_and_noop_sizes() -> None:
    config = AtariConfig("pong", screen_size=64, frame_stack=2, grayscale=False, fire_reset=False)
    env = make_atari_vector_env(config, 16)
    obs, info = env.reset(seed=0)
    assert obs.shape == (16, *config.observation_shape) == (16, 2, 64, 64, 3)
    starts = info["episode_frame_number"]
    assert len(set(starts.tolist())) > 1 and starts.max() <= 30  # no-op starts
    env.close()


def test_vector_evaluation_rewards_are_raw() -> None:
    env = make_atari_vector_env(AtariConfig("space_invaders").for_evaluation(), 4, seed=0)
    env.action_space.seed(0)
    rewards = [env.step(env.action_space.sample())[1] for _ in range(150)]
    assert np.concatenate(rewards).max() > 1
    env.close()


def _assert_same_frames(single: np.ndarray, vector: np.ndarray) -> None:
    """Equal up to a rare +-1 where OpenCV's fixed-order sums round the other way."""
    difference = np.abs(single.astype(np.int16) - vector.astype(np.int16))
    assert difference.max() <= 1
    assert np.count_nonzero(difference) <= difference.size // 1_000


@pytest.mark.parametrize("grayscale", [True, False])
def test_vector_and_single_env_produce_the_same_observations(grayscale: bool) -> None:
    config = dataclasses.replace(DETERMINISTIC_PONG, grayscale=grayscale)
    single = make_atari_env(config)
    vector = make_atari_vector_env(config, 1)
    single_obs, _ = single.reset(seed=0)
    vector_obs, _ = vector.reset(seed=0)
    assert vector.single_observation_space.shape == single.observation_space.shape
    _assert_same_frames(single_obs, vector_obs[0])
    for step in range(40):
        action = step % 6
        single_obs, single_reward, *_ = single.step(action)
        vector_obs, vector_reward, *_ = vector.step(np.array([action]))
        _assert_same_frames(single_obs, vector_obs[0])
        assert single_reward == vector_reward[0]
    vector.close()


def test_vector_training_signals_life_loss_without_restarting_the_game() -> None:
    env = make_atari_vector_env(AtariConfig("breakout"), 1, seed=0)
    env.action_space.seed(0)
    for _ in range(2_000):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        if terminated[0] or truncated[0]:
            break
    assert terminated[0] and not truncated[0]
    assert info["lives"][0] == 4
    *_, info = env.step(env.action_space.sample())
    assert info["lives"][0] == 4  # the next step continues the game, it does not reset it
    env.close()


def test_vector_evaluation_does_not_terminate_on_life_loss() -> None:
    env = make_atari_vector_env(AtariConfig("breakout").for_evaluation(), 1, seed=0)
    env.action_space.seed(0)
    for _ in range(2_000):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        if info["lives"][0] < 5 or terminated[0] or truncated[0]:
            break
    assert info["lives"][0] == 4
    assert not terminated[0] and not truncated[0]
    env.close()


def test_vector_episode_cap_counts_emulator_frames() -> None:
    config = dataclasses.replace(DETERMINISTIC_PONG, max_episode_frames=100)
    env = make_atari_vector_env(config, 1, seed=0)
    steps = 0
    terminated = truncated = np.zeros(1, dtype=bool)
    while not (terminated[0] or truncated[0]) and steps < 100:
        _, _, terminated, truncated, _ = env.step(np.zeros(1, dtype=np.int64))
        steps += 1
    assert truncated[0] and not terminated[0]
    assert steps == 100 // 4  # 100 frames at frame skip 4, not 100 agent steps
    env.close()


def test_vector_env_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="num_envs"):
        make_atari_vector_env(AtariConfig("pong"), 0)
    with pytest.raises(ValueError, match="num_threads"):
        make_atari_vector_env(AtariConfig("pong"), 2, num_threads=-1)


# ---------------------------------------------------------------------------------------------
# Sticky actions, through both constructors


def _pong_after(
    make: Callable[[AtariConfig], Callable[[int], np.ndarray]], prob: float, action: int
) -> np.ndarray:
    step = make(dataclasses.replace(DETERMINISTIC_PONG, sticky_action_prob=prob))
    obs = np.empty(0)
    for _ in range(30):
        obs = step(action)
    return obs


def _single_stepper(config: AtariConfig) -> Callable[[int], np.ndarray]:
    env = make_atari_env(config, seed=0)
    env.reset()
    return lambda action: env.step(action)[0]


def _vector_stepper(config: AtariConfig) -> Callable[[int], np.ndarray]:
    env = make_atari_vector_env(config, 1, seed=0)
    return lambda action: env.step(np.array([action]))[0][0]


@pytest.mark.parametrize("make", [_single_stepper, _vector_stepper], ids=["single", "vector"])
def test_sticky_actions_reach_the_emulator(
    make: Callable[[AtariConfig], Callable[[int], np.ndarray]],
) -> None:
    # Pong action 2 moves the paddle. With probability 1 the emulator repeats the previous
    # action forever (NOOP since reset), so the paddle never moves; with 0 it does.
    right, noop = 2, 0
    assert not np.array_equal(_pong_after(make, 0.0, right), _pong_after(make, 0.0, noop))
    np.testing.assert_array_equal(_pong_after(make, 1.0, right), _pong_after(make, 1.0, noop))
    # The option Machado et al. recommend is accepted as is.
    make(AtariConfig("pong", sticky_action_prob=0.25))(right)


def test_single_env_sets_the_emulator_sticky_probability() -> None:
    env = make_atari_env(AtariConfig("pong", sticky_action_prob=0.25))
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)


# ---------------------------------------------------------------------------------------------
# FIRE on reset, through both constructors


def _noop_steps_to_lose_a_life(env: gym.Env | AtariVectorEnv, limit: int) -> int:
    """NOOP steps until the first lost life, or ``limit`` if none is lost."""
    for step in range(1, limit + 1):
        if isinstance(env, AtariVectorEnv):
            lives = env.step(np.zeros(1, dtype=np.int64))[4]["lives"][0]
        else:
            env.step(0)
            lives = env.unwrapped.ale.lives()
        if lives < 5:
            return step
    return limit


@pytest.mark.parametrize(
    "make",
    [
        lambda config: make_atari_env(config, seed=0),
        lambda config: make_atari_vector_env(config, 1, seed=0),
    ],
    ids=["single", "vector"],
)
def test_fire_reset_launches_the_breakout_ball(
    make: Callable[[AtariConfig], gym.Env | AtariVectorEnv],
) -> None:
    # Breakout waits for FIRE: a NOOP-only agent loses a life only if the reset pressed FIRE.
    assert _noop_steps_to_lose_a_life(make(AtariConfig("breakout")), limit=300) < 300
    assert _noop_steps_to_lose_a_life(make(AtariConfig("breakout", fire_reset=False)), 300) == 300


# ---------------------------------------------------------------------------------------------
# Layering


def test_atari_module_does_not_import_ray() -> None:
    code = (
        "import sys, dsqn_rllib.envs.atari; "
        "bad = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')); "
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
