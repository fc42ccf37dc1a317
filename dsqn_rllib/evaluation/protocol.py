"""The evaluation protocol: how a trained Q-network's score is measured.

The protocol of the DQN line of work, which the DSQN paper (Chen et al. 2022, "Deep
Reinforcement Learning with Spiking Q-learning") follows:

- 30 episodes, each started with up to 30 random no-op frames (Mnih et al. 2015, Methods:
  Evaluation procedure);
- ε-greedy actions with ε = 0.05 (Mnih et al. 2015), greedy when ε = 0;
- an episode is a whole game: no end of episode on a lost life, rewards unclipped
  (Machado et al. 2018, "Revisiting the Arcade Learning Environment", Sec. 5);
- episodes are capped at 108k emulator frames, 30 min of play (Machado et al. 2018).

The loop::

    result = evaluate(net, "breakout", EvalConfig())   # or "CartPole-v1"
    result.mean, result.std, result.returns

Episodes run in parallel envs, each env with a fixed quota of episodes (the episodes split as
evenly as possible). Counting the first K episodes to finish over all envs would favour short
episodes, i.e. bias the score; with fixed quotas the set of episodes does not depend on how long
any of them lasts. Seeded: the same net, config and seed give the same returns.

This module is pure PyTorch + Gymnasium + ale-py and must not import Ray.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torch import nn

from dsqn_rllib.envs.atari import (
    EVAL_MAX_EPISODE_FRAMES,
    AtariConfig,
    make_atari_env,
    make_atari_vector_env,
    resolve_game,
)
from dsqn_rllib.errors import require_int

# Parallel envs when EvalConfig.num_envs is None: enough to batch inference, few enough that
# the last env to finish its quota does not leave the others idle for long.
DEFAULT_MAX_NUM_ENVS = 8

# A GIF keeps at most this many frames; longer episodes are subsampled evenly.
DEFAULT_MAX_GIF_FRAMES = 1_000


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation run; the defaults are the paper's protocol (Mnih et al. 2015)."""

    episodes: int = 30
    """Episodes to play and average over (Mnih et al. 2015; Chen et al. 2022)."""
    epsilon: float = 0.05
    """Probability of a uniformly random action at each step; 0 is greedy (Mnih et al. 2015)."""
    seed: int = 0
    """Seeds the envs (env i gets seed + i) and the ε-greedy draws."""
    max_episode_frames: int = EVAL_MAX_EPISODE_FRAMES
    """Atari only: episodes are truncated after 108k emulator frames (Machado et al. 2018).
    Gymnasium envs keep their own time limit."""
    num_envs: int | None = None
    """Parallel envs; None is min(episodes, 8). More envs than episodes are not created."""

    def __post_init__(self) -> None:
        require_int("EvalConfig.episodes", self.episodes, 1)
        eps = self.epsilon
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0.0 <= eps <= 1.0:
            raise ValueError(f"EvalConfig.epsilon must be in [0, 1], got {eps!r}")
        require_int("EvalConfig.seed", self.seed, 0)
        require_int("EvalConfig.max_episode_frames", self.max_episode_frames, 1)
        if self.num_envs is not None:
            require_int("EvalConfig.num_envs", self.num_envs, 1)

    @property
    def resolved_num_envs(self) -> int:
        """The number of envs actually run: never more than the episodes."""
        wanted = DEFAULT_MAX_NUM_ENVS if self.num_envs is None else self.num_envs
        return min(wanted, self.episodes)

    def quotas(self) -> list[int]:
        """Episodes each env plays: ``episodes`` split as evenly as possible, first envs first."""
        base, extra = divmod(self.episodes, self.resolved_num_envs)
        return [base + (i < extra) for i in range(self.resolved_num_envs)]


@dataclass(frozen=True)
class EvalResult:
    """Undiscounted, unclipped returns and lengths (agent steps) of the evaluated episodes.

    Episodes are ordered by env, then by time within each env, so the order is reproducible.
    """

    returns: tuple[float, ...]
    lengths: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.returns or len(self.returns) != len(self.lengths):
            raise ValueError(
                f"EvalResult needs >= 1 episode and one length per return, got "
                f"{len(self.returns)} returns and {len(self.lengths)} lengths"
            )

    @property
    def num_episodes(self) -> int:
        return len(self.returns)

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        """Population standard deviation (ddof = 0) of the returns."""
        return float(np.std(self.returns))

    @property
    def max(self) -> float:
        return float(np.max(self.returns))

    @property
    def min(self) -> float:
        return float(np.min(self.returns))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able summary (for the run registry and logs)."""
        return {
            "num_episodes": self.num_episodes,
            "mean": self.mean,
            "std": self.std,
            "max": self.max,
            "min": self.min,
            "mean_length": float(np.mean(self.lengths)),
            "returns": list(self.returns),
            "lengths": list(self.lengths),
        }


# ----------------------------------------------------------------------------------------------
# Environments


def is_gymnasium_env(env: str) -> bool:
    """True if ``env`` is a registered Gymnasium id whose env is not an ALE (Atari) env."""
    spec = gym.registry.get(env)
    if spec is None:
        return False
    entry = spec.entry_point if isinstance(spec.entry_point, str) else repr(spec.entry_point)
    return spec.namespace != "ALE" and not entry.startswith("ale_py")


def _atari_config(game: str, atari: AtariConfig | None, max_episode_frames: int) -> AtariConfig:
    """``atari`` (or the default protocol) for ``game``, turned into its evaluation variant."""
    base = dataclasses.replace(atari, game=game) if atari is not None else AtariConfig(game)
    return base.for_evaluation(max_episode_frames=max_episode_frames)


def make_eval_vector_env(
    env: str, num_envs: int, max_episode_frames: int, atari: AtariConfig | None = None
) -> gym.vector.VectorEnv:
    """``num_envs`` envs with NEXT_STEP autoreset: Atari (evaluation protocol) or Gymnasium."""
    if is_gymnasium_env(env):
        vector = gym.make_vec(
            env,
            num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": AutoresetMode.NEXT_STEP},
        )
    else:
        config = _atari_config(resolve_game(env), atari, max_episode_frames)
        vector = make_atari_vector_env(config, num_envs)
    mode = vector.metadata.get("autoreset_mode")
    problem = None
    if mode is not AutoresetMode.NEXT_STEP:  # run_episodes' bookkeeping relies on it
        problem = f"expected NEXT_STEP autoreset, got {mode!r}"
    elif not isinstance(vector.single_action_space, gym.spaces.Discrete):
        problem = f"Q-networks need a Discrete action space, got {vector.single_action_space}"
    if problem is not None:
        vector.close()
        raise ValueError(f"{env!r}: {problem}")
    return vector


# ----------------------------------------------------------------------------------------------
# Acting


@contextlib.contextmanager
def _eval_mode(net: nn.Module) -> Iterator[None]:
    """``net.eval()`` for the duration, then its previous mode back."""
    was_training = net.training
    net.eval()
    try:
        yield
    finally:
        net.train(was_training)


@contextlib.contextmanager
def _torch_threads(num_threads: int | None) -> Iterator[None]:
    """Torch's intra-op CPU threads set to ``num_threads`` for the duration (None: unchanged).

    Evaluation feeds batches of a few observations: one thread is as fast as many on an idle
    CPU and, measured on a busy 2-core machine, 40x faster than two (1.8 ms vs 70 ms per DQN
    forward of batch 2), because contended threads wait on each other at every op.
    """
    if num_threads is None:
        yield
        return
    require_int("torch_threads", num_threads, 1)
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def greedy_actions(
    net: nn.Module, obs: np.ndarray, num_actions: int, device: str | torch.device
) -> np.ndarray:
    """argmax_a Q(obs, a) for a batch of observations; the Q shape is checked in one line."""
    with torch.inference_mode():
        q = net(torch.as_tensor(obs, device=device))
    if q.shape != (len(obs), num_actions):
        raise ValueError(
            f"the network returned Q of shape {tuple(q.shape)}, expected ({len(obs)}, "
            f"{num_actions}) for {num_actions} actions"
        )
    return q.argmax(dim=1).cpu().numpy()


def epsilon_greedy(
    greedy: np.ndarray, epsilon: float, num_actions: int, rng: np.random.Generator
) -> np.ndarray:
    """Each action replaced by a uniform random one with probability ``epsilon``."""
    explore = rng.random(len(greedy)) < epsilon
    random_actions = rng.integers(num_actions, size=len(greedy))
    return np.where(explore, random_actions, greedy).astype(np.int64)


Policy = Callable[[np.ndarray], np.ndarray]


def run_episodes(
    vector: gym.vector.VectorEnv, policy: Policy, quotas: list[int], seed: int
) -> EvalResult:
    """Play ``quotas[i]`` episodes in env ``i`` of a NEXT_STEP-autoreset vector env.

    An env stops counting once its quota is done (it keeps stepping, ignored), so the set of
    episodes is fixed in advance and not biased towards short ones. With NEXT_STEP autoreset
    the step after an episode's last step ignores the action and returns the reset observation:
    it belongs to no episode and is not counted.
    """
    num_envs = vector.num_envs
    if len(quotas) != num_envs:
        raise ValueError(f"{len(quotas)} quotas for {num_envs} envs")
    quota = np.asarray(quotas)
    finished = np.zeros(num_envs, dtype=np.int64)
    ep_return = np.zeros(num_envs, dtype=np.float64)
    ep_length = np.zeros(num_envs, dtype=np.int64)
    episodes: list[list[tuple[float, int]]] = [[] for _ in range(num_envs)]
    resetting = np.zeros(num_envs, dtype=bool)  # this step is an autoreset step

    obs, _ = vector.reset(seed=seed)
    while (finished < quota).any():
        obs, reward, terminated, truncated, _ = vector.step(policy(obs))
        counted = (finished < quota) & ~resetting
        ep_return[counted] += np.asarray(reward, dtype=np.float64)[counted]
        ep_length[counted] += 1
        done = np.logical_or(terminated, truncated)
        for i in np.flatnonzero(done & counted):
            episodes[i].append((float(ep_return[i]), int(ep_length[i])))
            finished[i] += 1
            ep_return[i], ep_length[i] = 0.0, 0
        resetting = done
    flat = [episode for env_episodes in episodes for episode in env_episodes]
    return EvalResult(tuple(r for r, _ in flat), tuple(n for _, n in flat))


def evaluate(
    net: nn.Module,
    env: str,
    config: EvalConfig,
    *,
    atari: AtariConfig | None = None,
    device: str | torch.device = "cpu",
    torch_threads: int | None = 1,
) -> EvalResult:
    """Score ``net`` on ``env`` with the evaluation protocol of Mnih et al. 2015 / Chen et al.

    ``env`` is a Gymnasium id with vector observations (``"CartPole-v1"``) or any Atari game
    :func:`~dsqn_rllib.envs.atari.resolve_game` accepts (``"pong"``, ``"ALE/Pong-v5"``). Atari envs
    use ``atari`` (default: ``AtariConfig()``; its game is replaced by ``env``) in its
    evaluation variant: no-op starts, no life loss, unclipped rewards, episodes capped at
    ``config.max_episode_frames`` emulator frames (Machado et al. 2018). Actions are ε-greedy
    in ``net``'s Q-values, batched over ``config.resolved_num_envs`` envs, each playing a fixed
    quota of the episodes. ``net`` must already be on ``device``; it runs in eval mode under
    ``torch.inference_mode()`` and gets its previous mode back. ``torch_threads`` sets torch's
    CPU threads while evaluating (restored after; None leaves them alone).
    """
    rng = np.random.default_rng(config.seed)
    with (
        _torch_threads(torch_threads),
        _eval_mode(net),
        contextlib.closing(
            make_eval_vector_env(env, config.resolved_num_envs, config.max_episode_frames, atari)
        ) as vector,
    ):
        num_actions = int(vector.single_action_space.n)

        def policy(obs: np.ndarray) -> np.ndarray:
            greedy = greedy_actions(net, obs, num_actions, device)
            return epsilon_greedy(greedy, config.epsilon, num_actions, rng)

        return run_episodes(vector, policy, config.quotas(), config.seed)


# ----------------------------------------------------------------------------------------------
# Recording


class FrameSampler:
    """Keeps at most ``max_frames`` evenly spaced frames of a stream of unknown length.

    Every ``stride``-th frame is kept; when the buffer is full, every other kept frame is
    dropped and the stride doubles, so memory stays bounded for 27k-step episodes.
    """

    def __init__(self, max_frames: int) -> None:
        require_int("max_frames", max_frames, 2)
        self.max_frames = max_frames
        self.stride = 1
        self.seen = 0
        self.frames: list[np.ndarray] = []

    def add(self, frame: np.ndarray) -> None:
        if self.seen % self.stride == 0:
            self.frames.append(frame)
            if len(self.frames) > self.max_frames:
                self.frames = self.frames[::2]
                self.stride *= 2
        self.seen += 1


def _make_render_env(env: str, max_episode_frames: int, atari: AtariConfig | None) -> gym.Env:
    """One env rendering RGB arrays: Atari (evaluation protocol) or a Gymnasium id."""
    if is_gymnasium_env(env):
        single = gym.make(env, render_mode="rgb_array")
    else:
        config = _atari_config(resolve_game(env), atari, max_episode_frames)
        single = make_atari_env(config, render_mode="rgb_array")
    if not isinstance(single.action_space, gym.spaces.Discrete):
        raise ValueError(f"{env!r}: Q-networks need a Discrete action space")
    return single


def check_gif_target(env: str, path: str | Path) -> None:
    """Raise ``ConfigError`` (one line) unless an episode of ``env`` can be recorded to
    ``path``: its folder exists and is writable, Pillow imports, and the env renders frames
    (Gymnasium's classic-control envs draw with pygame, an optional dependency). Cheap: run
    it before an evaluation, so a bad ``--gif`` fails in a second, not after the episodes."""
    from dsqn_rllib.errors import ConfigError

    target = Path(path).expanduser()
    folder = target.parent
    if target.is_dir():
        raise ConfigError(f"--gif {str(path)!r} is a folder; give a file name, e.g. episode.gif")
    if not folder.is_dir():
        raise ConfigError(f"--gif {str(path)!r}: the folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (
        target.exists() and not os.access(target, os.W_OK)
    ):
        raise ConfigError(f"--gif {str(path)!r}: cannot write there (permission denied)")
    try:
        import PIL.Image  # noqa: F401 (recording needs it)
    except ImportError:
        raise ConfigError("--gif needs Pillow: pip install pillow") from None
    if not is_gymnasium_env(env):
        return  # ALE renders its own frames
    try:
        with contextlib.closing(gym.make(env, render_mode="rgb_array")) as probe:
            probe.reset(seed=0)
            probe.render()
    except gym.error.DependencyNotInstalled as err:
        first = (str(err).strip().splitlines() or ["a rendering dependency is missing"])[0]
        raise ConfigError(
            f"--gif on {env} cannot render frames: {first.rstrip('.')} (or leave out --gif)"
        ) from None


def write_gif(frames: list[np.ndarray], path: str | Path, fps: float) -> None:
    """Write RGB frames ``(H, W, 3)`` uint8 as an endlessly looping animated GIF."""
    from PIL import Image  # only recording needs Pillow

    if not frames:
        raise ValueError("no frames to write")
    images = [Image.fromarray(np.asarray(frame, dtype=np.uint8)) for frame in frames]
    images[0].save(
        Path(path),
        save_all=True,
        append_images=images[1:],
        duration=round(1000 / fps),
        loop=0,
    )


def record_episode_gif(
    net: nn.Module,
    game: str,
    path: str | Path,
    *,
    epsilon: float = 0.05,
    seed: int = 0,
    max_episode_frames: int = EVAL_MAX_EPISODE_FRAMES,
    atari: AtariConfig | None = None,
    fps: float = 30.0,
    max_gif_frames: int = DEFAULT_MAX_GIF_FRAMES,
    device: str | torch.device = "cpu",
    torch_threads: int | None = 1,
) -> EvalResult:
    """Play one evaluation episode of ``game`` and write it to ``path`` as an animated GIF.

    The episode follows the same protocol as :func:`evaluate` (ε-greedy, no-op starts, no life
    loss, unclipped rewards, frame cap) in a single env; ``game`` may also be a Gymnasium id.
    Frames are ``env.render()`` after the reset and after every agent step, evenly subsampled
    to at most ``max_gif_frames``; the GIF plays them at ``fps``. Returns the episode's
    return and length as a one-episode :class:`EvalResult`. ``device`` and ``torch_threads``
    as in :func:`evaluate`.
    """
    EvalConfig(episodes=1, epsilon=epsilon, seed=seed, max_episode_frames=max_episode_frames)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    sampler = FrameSampler(max_gif_frames)
    rng = np.random.default_rng(seed)
    with (
        _torch_threads(torch_threads),
        _eval_mode(net),
        contextlib.closing(_make_render_env(game, max_episode_frames, atari)) as env,
    ):
        num_actions = int(env.action_space.n)

        def policy(obs: np.ndarray) -> np.ndarray:
            greedy = greedy_actions(net, obs, num_actions, device)
            return epsilon_greedy(greedy, epsilon, num_actions, rng)

        result = play_rendered_episode(env, policy, seed, sampler)
    write_gif(sampler.frames, path, fps)
    return result


def play_rendered_episode(
    env: gym.Env, policy: Policy, seed: int, sampler: FrameSampler
) -> EvalResult:
    """Play one episode of a single env (``policy`` sees a batch of one) and sample its frames.

    Frames are ``env.render()`` after the reset and after every step.
    """
    obs, _ = env.reset(seed=seed)
    sampler.add(env.render())
    total, steps, done = 0.0, 0, False
    while not done:
        action = int(policy(np.asarray(obs)[None])[0])
        obs, reward, terminated, truncated, _ = env.step(action)
        total, steps, done = total + float(reward), steps + 1, terminated or truncated
        sampler.add(env.render())
    return EvalResult((total,), (steps,))


__all__ = [
    "DEFAULT_MAX_GIF_FRAMES",
    "DEFAULT_MAX_NUM_ENVS",
    "EvalConfig",
    "EvalResult",
    "FrameSampler",
    "check_gif_target",
    "evaluate",
    "greedy_actions",
    "is_gymnasium_env",
    "make_eval_vector_env",
    "play_rendered_episode",
    "record_episode_gif",
    "run_episodes",
    "write_gif",
]
