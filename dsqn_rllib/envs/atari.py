"""Atari environment construction: the DQN preprocessing protocol, written out once.

Two constructors implement the same protocol (Mnih et al. 2015, "Human-level control through
deep reinforcement learning"; Machado et al. 2018, "Revisiting the Arcade Learning
Environment") from one :class:`AtariConfig`:

- :func:`make_atari_env` builds one Python ``gymnasium.Env`` whose wrapper stack is written out
  in order, so the preprocessing can be audited line by line (the order of OpenAI Baselines'
  ``wrap_deepmind``, which CleanRL's ``dqn_atari.py`` also uses)::

      gym.make("ALE/<Game>-v5", frameskip=1, repeat_action_probability=sticky, ...)
      -> NoopReset(noop_max)            1..noop_max raw no-op frames after a real reset
      -> MaxAndSkip(frame_skip)         repeat the action, sum rewards, max of the last 2 frames
      -> EpisodicLife                   (training) a lost life ends the episode, not the game
      -> FireReset                      press FIRE (then action 2) after every reset
      -> ResizeArea(screen_size)        area-average down to 84x84, like cv2.INTER_AREA
      -> ClipRewardSign                 (training) reward -> sign(reward)
      -> FrameStackObservation(stack)   (stack, 84, 84) uint8, zero-padded at episode start

- :func:`make_atari_vector_env` maps the same fields onto ``ale_py.vector_env.AtariVectorEnv``,
  the C++ batched implementation (many times the throughput of Python wrappers).

Training uses :class:`AtariConfig` as is; evaluation uses :meth:`AtariConfig.for_evaluation`
(no life loss, raw rewards, the same no-op starts, episodes capped at 108k frames).

This module must not import Ray: the RLlib adapters import it, not the other way round.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass
from typing import Any, SupportsFloat

import ale_py
import gymnasium as gym
import numpy as np
from ale_py import roms
from ale_py.registration import rom_id_to_name
from ale_py.vector_env import AtariVectorEnv
from gymnasium.wrappers import FrameStackObservation

from dsqn_rllib.errors import ConfigError, require_int

gym.register_envs(ale_py)

# The 17 games of Chen et al. 2022 (DSQN), short name -> gymnasium id of ale-py 0.12.
# The short names are also the ROM ids that ``AtariVectorEnv(game=...)`` expects.
PAPER_GAMES: dict[str, str] = {
    "atlantis": "ALE/Atlantis-v5",
    "beam_rider": "ALE/BeamRider-v5",
    "boxing": "ALE/Boxing-v5",
    "breakout": "ALE/Breakout-v5",
    "crazy_climber": "ALE/CrazyClimber-v5",
    "gopher": "ALE/Gopher-v5",
    "jamesbond": "ALE/Jamesbond-v5",
    "kangaroo": "ALE/Kangaroo-v5",
    "krull": "ALE/Krull-v5",
    "name_this_game": "ALE/NameThisGame-v5",
    "pong": "ALE/Pong-v5",
    "road_runner": "ALE/RoadRunner-v5",
    "space_invaders": "ALE/SpaceInvaders-v5",
    "star_gunner": "ALE/StarGunner-v5",
    "tennis": "ALE/Tennis-v5",
    "tutankham": "ALE/Tutankham-v5",
    "video_pinball": "ALE/VideoPinball-v5",
}

# Evaluation episodes are capped at 108k emulator frames = 30 min of play at 60 Hz
# (Mnih et al. 2015; Machado et al. 2018, Sec. 5), i.e. 27k agent steps at frame skip 4.
EVAL_MAX_EPISODE_FRAMES = 108_000

# ROM ids ale-py ships (its wheel carries the ROMs; nothing to download).
ALL_ROM_IDS: tuple[str, ...] = tuple(sorted(roms.get_all_rom_ids()))

# Suffixes of gymnasium ids that resolve_game strips: "ALE/Pong-v5", "PongNoFrameskip-v4".
_ENV_ID_VERSION = re.compile(r"-v\d+$")
_ENV_ID_VARIANTS = ("NoFrameskip", "Deterministic")


def _normalise(name: str) -> str:
    """Lower case, letters and digits only: "Space_Invaders" and "SpaceInvaders" compare equal."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


# "spaceinvaders" -> "space_invaders" for every ROM; the normalisation keeps the ids distinct.
_ROM_BY_KEY: dict[str, str] = {_normalise(rom): rom for rom in ALL_ROM_IDS}
assert len(_ROM_BY_KEY) == len(ALL_ROM_IDS), "two ALE ROM ids normalise to the same key"


def resolve_game(name: str) -> str:
    """Return the ALE ROM id (``"space_invaders"``) that ``name`` means.

    Accepts a ROM id or paper short name (``"pong"``), CamelCase (``"SpaceInvaders"``) and
    gymnasium env ids (``"ALE/Pong-v5"``, ``"PongNoFrameskip-v4"``). Any ROM ale-py ships is
    allowed, not only the 17 of :data:`PAPER_GAMES`. Raises ``ValueError`` in one line naming the
    closest valid names otherwise.
    """
    if not isinstance(name, str):
        raise ValueError(f"game must be a string, got {type(name).__name__} {name!r}")
    stem = name.strip()
    stem = stem.removeprefix("ALE/")
    stem = _ENV_ID_VERSION.sub("", stem)
    for variant in _ENV_ID_VARIANTS:
        stem = stem.removesuffix(variant)
    rom = _ROM_BY_KEY.get(_normalise(stem))
    if rom is not None:
        return rom
    closest = difflib.get_close_matches(_normalise(stem), list(_ROM_BY_KEY), n=3, cutoff=0.0)
    names = ", ".join(_ROM_BY_KEY[key] for key in closest)
    raise ValueError(
        f"unknown game {name!r}; closest: {names}; any ALE ROM id is allowed "
        "(see dsqn_rllib.envs.atari.PAPER_GAMES)"
    )


def env_id(game: str) -> str:
    """Gymnasium id of the v5 env of ``game`` (any name :func:`resolve_game` accepts)."""
    return f"ALE/{rom_id_to_name(resolve_game(game))}-v5"


def num_actions(game: str, *, full_action_space: bool = False) -> int:
    """Number of discrete actions of ``game``: its minimal action set, or all 18 if full."""
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    ale = ale_py.ALEInterface()
    ale.loadROM(roms.get_rom_path(resolve_game(game)))
    actions = ale.getLegalActionSet() if full_action_space else ale.getMinimalActionSet()
    return len(actions)


@dataclass(frozen=True)
class AtariConfig:
    """The Atari preprocessing protocol; the defaults are the DQN training protocol.

    ``game`` is normalised to its ROM id on construction (``AtariConfig("SpaceInvaders").game
    == "space_invaders"``) and every field is validated: a bad value raises ``ValueError`` in one
    line before any environment or Ray actor exists.
    """

    # Game options
    game: str = "breakout"
    """Any name :func:`resolve_game` accepts; stored as the ROM id. Breakout is the DQN classic."""
    full_action_space: bool = False
    """False: the game's minimal action set, as DQN (Mnih et al. 2015) and the DSQN paper use."""

    # Episode start options
    noop_max: int = 30
    """A random 1..noop_max raw no-op frames after each reset ("up to 30 no-op actions",
    Mnih et al. 2015, Methods: Evaluation procedure). 0 disables the no-op starts."""
    fire_reset: bool = True
    """Press FIRE after each reset (and after each lost life in training) in games that need it
    to start, e.g. Breakout (OpenAI Baselines' ``FireResetEnv``, used by CleanRL and Dopamine)."""

    # Frame options
    frame_skip: int = 4
    """Repeat each action for 4 frames and sum their rewards; the observation is the
    pixel-wise max over the last two frames, against Atari sprite flicker (Mnih et al. 2015)."""
    screen_size: int = 84
    """Frames are resized to ``screen_size`` x ``screen_size`` (84x84, Mnih et al. 2015)."""
    grayscale: bool = True
    """Luminance frames (Mnih et al. 2015). False gives RGB observations (stack, H, W, 3)."""
    frame_stack: int = 4
    """The observation stacks the last 4 preprocessed frames, first axis (Mnih et al. 2015)."""

    # Training-signal options (the evaluation variant turns these off)
    terminal_on_life_loss: bool = True
    """Training only: a lost life ends the episode for the learner but the game goes on
    (Mnih et al. 2015; Baselines' ``EpisodicLifeEnv``). Machado et al. 2018 advise against it."""
    clip_rewards: bool = True
    """Training only: reward -> sign(reward) in {-1, 0, 1} (Mnih et al. 2015)."""

    # Stochasticity and episode length
    sticky_action_prob: float = 0.0
    """Probability that the emulator repeats the previous action instead (sticky actions).
    0.0 is the DQN/DSQN protocol; Machado et al. 2018 recommend 0.25 (ale-py's v5 default)."""
    max_episode_frames: int = EVAL_MAX_EPISODE_FRAMES
    """Episodes are truncated after 108k emulator frames, 30 min of play (Machado et al. 2018)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "game", resolve_game(self.game))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` with one line naming the first bad field."""
        require_int("AtariConfig.noop_max", self.noop_max, 0)
        require_int("AtariConfig.frame_skip", self.frame_skip, 1)
        require_int("AtariConfig.screen_size", self.screen_size, 1)
        require_int("AtariConfig.frame_stack", self.frame_stack, 1)
        require_int("AtariConfig.max_episode_frames", self.max_episode_frames, 1)
        for name in (
            "full_action_space",
            "fire_reset",
            "grayscale",
            "terminal_on_life_loss",
            "clip_rewards",
        ):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(f"AtariConfig.{name} must be a bool, got {value!r}")
        prob = self.sticky_action_prob
        if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0.0 <= prob <= 1.0:
            raise ValueError(f"AtariConfig.sticky_action_prob must be in [0, 1], got {prob!r}")

    def for_evaluation(self, *, max_episode_frames: int = EVAL_MAX_EPISODE_FRAMES) -> AtariConfig:
        """The paper's evaluation protocol for the same game.

        No life loss, unclipped rewards, the same no-op starts and sticky actions, episodes
        capped at 108k frames (Mnih et al. 2015, Methods; Machado et al. 2018). The agent's
        epsilon = 0.05 and the 30 episodes belong to the evaluation loop, not to the env.
        """
        return dataclasses.replace(
            self,
            terminal_on_life_loss=False,
            clip_rewards=False,
            max_episode_frames=max_episode_frames,
        )

    @property
    def observation_shape(self) -> tuple[int, ...]:
        """Shape of one observation: (stack, H, W) grayscale or (stack, H, W, 3) RGB, uint8."""
        frame = (self.screen_size, self.screen_size)
        return (self.frame_stack, *frame) if self.grayscale else (self.frame_stack, *frame, 3)


# ----------------------------------------------------------------------------------------------
# The wrappers of make_atari_env, innermost first.


class NoopReset(gym.Wrapper):
    """After a real reset, take a random 1..noop_max no-op frames (Mnih et al. 2015)."""

    def __init__(self, env: gym.Env, noop_max: int) -> None:
        super().__init__(env)
        self.noop_max = noop_max
        self.noop_action = 0
        if noop_max > 0 and env.unwrapped.get_action_meanings()[0] != "NOOP":
            raise ValueError(f"{env.spec.id if env.spec else env} has no NOOP action 0")

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        if self.noop_max == 0:
            return obs, info
        for _ in range(int(self.np_random.integers(1, self.noop_max + 1))):
            obs, _, terminated, truncated, info = self.env.step(self.noop_action)
            if terminated or truncated:
                obs, info = self.env.reset(options=options)
        return obs, info


class MaxAndSkip(gym.Wrapper):
    """Repeat the action ``skip`` frames, sum the rewards, max-pool the last two frames.

    The max over two consecutive frames removes the flicker of sprites that the Atari draws on
    alternate frames (Mnih et al. 2015, Methods: Preprocessing).
    """

    def __init__(self, env: gym.Env, skip: int) -> None:
        super().__init__(env)
        self.skip = skip

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        total_reward = 0.0
        last_frames: list[np.ndarray] = []
        terminated = truncated = False
        info: dict[str, Any] = {}
        for _ in range(self.skip):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total_reward += float(reward)
            last_frames = [*last_frames[-1:], obs]
            if terminated or truncated:
                break
        frame = np.maximum(*last_frames) if len(last_frames) == 2 else last_frames[0]
        return frame, total_reward, terminated, truncated, info


class EpisodicLife(gym.Wrapper):
    """A lost life ends the episode for the learner; the game only resets when it is over.

    ``reset()`` after a lost life takes one no-op step instead of restarting the game, so later
    lives (and their states) are still reached (Mnih et al. 2015; Baselines' EpisodicLifeEnv).
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if self.game_over or seed is not None:
            obs, info = self.env.reset(seed=seed, options=options)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(options=options)
        self.game_over = False
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info


class FireReset(gym.Wrapper):
    """Press FIRE, then action 2, after each reset: games like Breakout wait for FIRE.

    As Baselines' ``FireResetEnv``; only applied to games whose action 1 is FIRE.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        if len(meanings) < 3 or meanings[1] != "FIRE":
            raise ValueError(f"FireReset needs action 1 == FIRE, got actions {meanings}")

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        for action in (1, 2):
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset(options=options)
        return obs, info


def _area_taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Area-resize taps along one axis: output pixel i = sum_k weights[i, k] * x[index[i, k]].

    Output pixel i covers input span [i * s, (i + 1) * s), s = size_in / size_out; each input
    pixel weighs by its overlap with that span (cv2.INTER_AREA when shrinking).
    """
    scale = size_in / size_out
    lo = np.arange(size_out)[:, None] * scale
    pixel = np.arange(size_in)[None, :]
    overlap = np.clip(np.minimum(lo + scale, pixel + 1) - np.maximum(lo, pixel), 0.0, None)
    overlap[overlap < 1e-9] = 0.0
    dense = overlap / overlap.sum(axis=1, keepdims=True)
    taps = int((dense > 0).sum(axis=1).max())
    # The `taps` largest weights of each row hold all its non-zeros (the rest pad with 0).
    index = np.sort(np.argsort(-dense, axis=1, kind="stable")[:, :taps], axis=1)
    weights = np.take_along_axis(dense, index, axis=1).astype(np.float32)
    return index, weights


class ResizeArea(gym.ObservationWrapper):
    """Resize frames to ``size`` x ``size`` by area averaging.

    What ``cv2.resize(..., interpolation=cv2.INTER_AREA)`` does when shrinking and what
    AtariVectorEnv does in C++ (the tests check both agree bit for bit). Written as a few
    gathered taps per axis so the project needs no OpenCV (gymnasium's AtariPreprocessing and
    ResizeObservation import cv2) and no BLAS call: a tiny matmul per step lets OpenBLAS spin
    threads, which made one env 30x slower on a busy 2-core machine.
    """

    def __init__(self, env: gym.Env, size: int) -> None:
        super().__init__(env)
        space = env.observation_space
        assert isinstance(space, gym.spaces.Box) and space.dtype == np.uint8
        height, width = space.shape[:2]
        channels = (1,) * (len(space.shape) - 2)  # broadcast the weights over an RGB axis
        self.row_index, row_weights = _area_taps(height, size)
        self.col_index, col_weights = _area_taps(width, size)
        self.row_weights = row_weights.reshape(*row_weights.shape, 1, *channels)
        self.col_weights = col_weights.reshape(1, *col_weights.shape, *channels)
        shape = (size, size, *space.shape[2:])
        self.observation_space = gym.spaces.Box(0, 255, shape, np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        frame = observation.astype(np.float32)
        rows = (frame[self.row_index] * self.row_weights).sum(axis=1)  # (size, W, ...)
        cols = (rows[:, self.col_index] * self.col_weights).sum(axis=2)  # (size, size, ...)
        return np.clip(np.rint(cols), 0, 255).astype(np.uint8)


class ClipRewardSign(gym.RewardWrapper):
    """Reward -> sign(reward) in {-1, 0, 1}, one scale for all games (Mnih et al. 2015)."""

    def reward(self, reward: SupportsFloat) -> float:
        return float(np.sign(float(reward)))


def make_atari_env(
    config: AtariConfig, *, seed: int | None = None, render_mode: str | None = None
) -> gym.Env:
    """One Atari env with the protocol of ``config``; observations (stack, 84, 84) uint8.

    With a ``seed`` the env is reset once here with it (seeding the emulator, the no-op starts
    and sticky actions) and its action space is seeded, so the caller's later ``reset()`` calls
    continue a reproducible stream.
    """
    gym_id = env_id(config.game)
    if gym_id not in gym.registry:
        raise ValueError(
            f"game {config.game!r} has no single-player gymnasium env in ale-py "
            "(combat, joust, maze_craze, warlords are multi-player only)"
        )
    env = gym.make(
        gym_id,
        frameskip=1,  # MaxAndSkip repeats actions, so the max-pool sees every frame.
        repeat_action_probability=config.sticky_action_prob,
        full_action_space=config.full_action_space,
        max_num_frames_per_episode=config.max_episode_frames,  # ALE truncates: frames, not steps
        obs_type="grayscale" if config.grayscale else "rgb",
        render_mode=render_mode,
    )
    env = NoopReset(env, config.noop_max)
    env = MaxAndSkip(env, config.frame_skip)
    if config.terminal_on_life_loss:
        env = EpisodicLife(env)
    meanings = env.unwrapped.get_action_meanings()
    if config.fire_reset and len(meanings) >= 3 and meanings[1] == "FIRE":
        env = FireReset(env)
    env = ResizeArea(env, config.screen_size)
    if config.clip_rewards:
        env = ClipRewardSign(env)
    # Zeros before the first frame of an episode, as DeepMind's DQN, Dopamine and AtariVectorEnv.
    env = FrameStackObservation(env, config.frame_stack, padding_type="zero")
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def make_atari_vector_env(
    config: AtariConfig, num_envs: int, *, seed: int | None = None, num_threads: int = 0
) -> AtariVectorEnv:
    """``num_envs`` envs stepped in C++ threads; observations (num_envs, stack, 84, 84) uint8.

    Same protocol as :func:`make_atari_env`, with these differences of AtariVectorEnv:

    - Life loss: its ``episodic_life=True`` terminates on a lost life *and restarts the game*
      (a full ``reset_game`` at the next step), so an agent would never play its second life.
      The DQN protocol keeps the game going, which is its ``life_loss_info=True``:
      ``terminated`` is True on the step that loses a life and nothing is reset; the next step
      executes its action in the same game (no FIRE, no no-ops, frame stack not cleared).
      A consumer that follows gymnasium's NEXT_STEP autoreset contract (this env's mode)
      takes that next step's observation as the first of a new episode and drops its reward.
    - A real game over or the frame cap (counted in emulator frames, as ALE's) resets that env
      on the step after it (NEXT_STEP autoreset): that step ignores its action.
    - No-op starts: a uniform 0..noop_max-1 no-op frames, one fewer when it presses FIRE, and
      it presses FIRE (only) once, before the no-ops; Python's are 1..noop_max, then FIRE, 2.
    - Rewards are int32 (clipped to [-1, 1] in training) and ``info`` has ``lives``,
      ``frame_number``, ``episode_frame_number`` and ``env_id`` arrays.

    ``seed`` resets all envs once here with seeds ``seed, seed + 1, ...`` and seeds the action
    space. ``num_threads=0`` lets ALE choose its number of worker threads.
    """
    require_int("num_envs", num_envs, 1)
    require_int("num_threads", num_threads, 0)
    env = AtariVectorEnv(
        game=config.game,
        num_envs=num_envs,
        num_threads=num_threads,
        full_action_space=config.full_action_space,
        repeat_action_probability=config.sticky_action_prob,
        max_num_frames_per_episode=config.max_episode_frames,  # counted in emulator frames
        noop_max=config.noop_max,
        use_fire_reset=config.fire_reset,  # ignored by games without FIRE
        frameskip=config.frame_skip,
        maxpool=True,
        img_height=config.screen_size,
        img_width=config.screen_size,
        grayscale=config.grayscale,
        stack_num=config.frame_stack,
        episodic_life=False,  # would restart the whole game on a lost life; see above
        life_loss_info=config.terminal_on_life_loss,
        reward_clipping=config.clip_rewards,
    )
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def random_play_observations(config: AtariConfig, steps: int, *, seed: int = 0) -> np.ndarray:
    """``steps`` observations, (steps, stack, 84, 84) uint8, of uniformly random play under
    ``config``'s protocol, reproducible from ``seed``: a probe of real frames (e.g. for
    ``dsqn_rllib.snn.spike_init.threshold_aware_init_``)."""
    require_int("steps", steps, 1)
    env = make_atari_env(config, seed=seed)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset()
    frames = []
    for _ in range(steps):
        frames.append(obs)
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return np.stack(frames)


def resolve_env(env: Any) -> tuple[str | None, str | None]:
    """``(game, None)`` for an Atari game (any name ``resolve_game`` takes, with or without
    ``ale_py:``), ``(None, gym_id)`` for a registered Gymnasium env with vector observations.
    Raises ``ConfigError`` (one line) for anything else."""
    if not isinstance(env, str) or not env:
        raise ConfigError(
            f"env must be an Atari game (pong, ale_py:ALE/Pong-v5) or a Gymnasium id, got {env!r}"
        )
    name = env.removeprefix("ale_py:")
    spec = gym.registry.get(name)
    # ale-py's own Gymnasium ids (PongNoFrameskip-v4, Pong-v4, ...) are the game with the
    # paper's preprocessing, never an MLP on raw pixels.
    is_ale_id = (
        name != env
        or name.startswith("ALE/")
        or name.endswith("NoFrameskip-v4")
        or (spec is not None and str(spec.entry_point).startswith("ale_py"))
    )
    if not is_ale_id and spec is not None:
        return None, name
    try:
        return resolve_game(name), None
    except ValueError as err:
        if is_ale_id:
            raise ConfigError(str(err)) from None
        game_error = str(err).split("; any ALE ROM id")[0]
    close = difflib.get_close_matches(name, list(gym.registry), n=3)
    hint = f" (closest Gymnasium ids: {', '.join(close)})" if close else ""
    raise ConfigError(f"unknown env {env!r}: not a Gymnasium id{hint}; as a game: {game_error}")
