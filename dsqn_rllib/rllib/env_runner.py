"""A sampling actor: E environments stepped in lockstep, one batched Q-network call per step.

RLlib's ``SingleAgentEnvRunner`` turns every step into episode objects pushed through
connector pipelines; at Atari rates that Python bookkeeping, not the network, is the cost.
This runner keeps RLlib's actor contract (``EnvRunnerGroup`` creates, health-checks and
restarts it; ``set_state`` takes the learner's weights) but samples like a classic DQN actor:

    obs (E, 4, 84, 84) uint8 --Q-network (batched, no grad)--> ε-greedy actions --> env.step

and returns *chunks* of plain numpy arrays in the layout of ``FrameReplayBuffer.add_chunk``
(each frame once, uint8), plus the episodes it finished and the spike rates it saw.

Atari envs are ``ale_py``'s C++ ``AtariVectorEnv``. The DQN protocol's training-only parts
are applied here so that metrics can see the real game: life loss ends a *learning* episode
(``terminated`` in the replay) while the game goes on, and rewards are sign-clipped for the
replay while returns are summed unclipped.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import ray
import torch
from ray.rllib.core import COMPONENT_RL_MODULE, DEFAULT_MODULE_ID
from ray.rllib.env.env_runner import EnvRunner
from ray.rllib.utils.checkpoints import Checkpointable

from dsqn_rllib.envs.atari import resolve_env
from dsqn_rllib.ops.runtime import keep_freed_memory_mapped
from dsqn_rllib.replay.frame_replay import StreamTracker, newest_frames
from dsqn_rllib.snn.networks import QNetwork

# Added to the runners' nice value (0 = same priority as the learner).
RUNNER_NICENESS = 10


@dataclass
class SampleChunk:
    """What one ``sample_chunk`` call returns; arrays are (E, L, ...) in replay layout."""

    stream_ids: np.ndarray
    frames: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    episode_start: np.ndarray
    valid: np.ndarray
    # Finished episodes (whole games on Atari), unclipped returns, agent steps.
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    # Mean firing rate per LIF layer over this chunk's inferences (empty for the DQN twin).
    firing_rates: dict[str, float] = field(default_factory=dict)
    spikes_per_inference: float = 0.0
    worker_index: int = 0
    weights_seq_no: int = 0
    env_seconds: float = 0.0
    inference_seconds: float = 0.0

    @property
    def env_steps(self) -> int:
        return int(self.actions.size)


class _ChunkWriter:
    """The arrays of a chunk being sampled (E envs x L steps) and its running sums."""

    def __init__(
        self, num_envs: int, num_steps: int, frame_shape: tuple, frame_dtype: type
    ) -> None:
        E, L = num_envs, num_steps
        self.frames = np.empty((E, L, *frame_shape), dtype=frame_dtype)
        self.actions = np.empty((E, L), dtype=np.int64)
        self.rewards = np.empty((E, L), dtype=np.float32)
        self.terminated = np.empty((E, L), dtype=bool)
        self.truncated = np.empty((E, L), dtype=bool)
        self.episode_start = np.empty((E, L), dtype=bool)
        self.valid = np.empty((E, L), dtype=bool)
        self.steps = 0  # rows written
        self.returns: list[float] = []
        self.lengths: list[int] = []
        self.rate_sums: dict[str, float] = {}
        self.spikes = 0.0
        self.env_seconds = 0.0
        self.inference_seconds = 0.0


def make_training_env(
    cfg: Any, num_envs: int, seed: int, num_threads: int = 1
) -> gym.vector.VectorEnv | Any:
    """The vectorised training env: Atari in C++ on ``num_threads`` threads (0: ALE's choice;
    life loss and clipping left to the runner), a Gymnasium id as a synchronous vector env.
    Both autoreset on the step after an end. ``cfg`` is a ``DSQNConfig``."""
    game, gym_id = resolve_env(cfg.env)
    if game is not None:
        from dsqn_rllib.envs.atari import AtariConfig, make_atari_vector_env

        atari = AtariConfig(
            game=game,
            sticky_action_prob=0.25 if cfg.sticky_actions else 0.0,
            max_episode_frames=cfg.max_episode_frames,
            terminal_on_life_loss=False,  # applied by the runner, so the game goes on
            clip_rewards=False,  # clipped by the runner, so returns stay unclipped
        )
        return make_atari_vector_env(atari, num_envs, seed=seed, num_threads=num_threads)
    env = gym.make_vec(gym_id, num_envs=num_envs, vectorization_mode="sync")
    env.reset(seed=seed)
    return env


class VectorEnvRunner(EnvRunner, Checkpointable):
    """RLlib env-runner actor for ``PipelinedDQN``: lockstep envs, batched inference, chunks."""

    def __init__(self, *, config: Any, **kwargs: Any) -> None:
        super().__init__(config=config, **kwargs)
        keep_freed_memory_mapped()
        if self.worker_index:  # a sampling actor (index 0 lives in the learner's process)
            # One thread per runner, at a lower CPU priority: where runners share cores with
            # the learner (a laptop), the learner's multi-threaded update must not wait for a
            # thread preempted by inference (measured on 2 cores: -15% updates/s without this).
            torch.set_num_threads(1)
            with contextlib.suppress(OSError):
                os.nice(RUNNER_NICENESS)
        self.is_atari = bool(self.config.is_atari)
        self.num_envs = int(self.config.num_envs_per_env_runner)
        index = max(1, self.worker_index or 1)
        self.stream_ids = np.arange((index - 1) * self.num_envs, index * self.num_envs)
        self._seed_value = int((self.config.seed or 0) * 10_007 + index * 1_000)
        self._rng = np.random.default_rng(self._seed_value)
        self._weights_seq_no = 0
        self._chunk: _ChunkWriter | None = None
        self._action = np.zeros(0, dtype=np.int64)  # sent, not yet received
        self._sent_at = 0.0
        self.env: Any = None
        self.make_env()
        self.make_module()

    # --- RLlib EnvRunner contract ---------------------------------------------------------

    def make_env(self) -> None:
        if self.env is not None:
            self.env.close()
        # An actor has one CPU; in the learner's process the envs may use every core while
        # the learner waits for them.
        threads = 1 if self.worker_index else 0
        self.env = make_training_env(self.config, self.num_envs, self._seed_value, threads)
        self._obs, info = self.env.reset(seed=self._seed_value)
        self._lives = np.asarray(info.get("lives", np.zeros(self.num_envs)), dtype=np.int64)
        self._tracker = StreamTracker(self.num_envs)
        self._episode_start, self._valid = self._tracker.reset()
        self._running_return = np.zeros(self.num_envs)
        self._running_length = np.zeros(self.num_envs, dtype=np.int64)

    def make_module(self) -> None:
        spec = self.config.get_rl_module_spec(spaces=self.get_spaces(), inference_only=True)
        self.module = spec.build()
        self.module.eval()
        self.net: QNetwork = self.module.net

    def share_module(self, module: Any) -> None:
        """Act with ``module`` itself (the learner's, in the learner's process): every action
        comes from the newest weights and no weights are ever copied."""
        self.module = module
        self.net = module.net

    def get_spaces(self) -> dict[str, tuple[gym.Space, gym.Space]]:
        return {
            DEFAULT_MODULE_ID: (self.env.single_observation_space, self.env.single_action_space)
        }

    def assert_healthy(self) -> None:
        assert self.env is not None and self.module is not None

    def sample(self, **kwargs: Any) -> SampleChunk:
        return self.sample_chunk(**kwargs)

    def get_metrics(self) -> dict:
        return {}

    def stop(self) -> None:
        if self.env is not None:
            self.env.close()

    def get_state(
        self, components: Any = None, *, not_components: Any = None, **kwargs: Any
    ) -> dict:
        state: dict[str, Any] = {"weights_seq_no": self._weights_seq_no}
        if self._check_component(COMPONENT_RL_MODULE, components, not_components):
            module_state = self.module.get_state(inference_only=True)
            state[COMPONENT_RL_MODULE] = {DEFAULT_MODULE_ID: module_state}
        return state

    def set_state(self, state: dict) -> None:
        module_state = state.get(COMPONENT_RL_MODULE)
        if module_state is None:
            return
        if isinstance(module_state, ray.ObjectRef):  # EnvRunnerGroup.sync_weights sends refs
            module_state = ray.get(module_state)
        if DEFAULT_MODULE_ID in module_state:
            module_state = module_state[DEFAULT_MODULE_ID]
        self.module.set_state(module_state)
        self._weights_seq_no = int(state.get("weights_seq_no", self._weights_seq_no + 1))

    def get_ctor_args_and_kwargs(self) -> tuple[tuple, dict]:
        return (), {"config": self.config}

    # --- sampling -------------------------------------------------------------------------

    def set_weights_and_sample(
        self, weights: dict | None, weights_seq_no: int, num_steps: int, epsilon: float, stats: bool
    ) -> SampleChunk:
        """One remote call per chunk: take newer weights if given, then sample."""
        if weights is not None and weights_seq_no > self._weights_seq_no:
            self.module.set_state(weights)
            self._weights_seq_no = weights_seq_no
        return self.sample_chunk(num_steps=num_steps, epsilon=epsilon, stats=stats)

    def sample_chunk(
        self, num_steps: int = 32, epsilon: float = 1.0, stats: bool = True
    ) -> SampleChunk:
        """Step all E envs ``num_steps`` times with ε-greedy actions; rows for the replay."""
        self.begin_chunk(num_steps)
        for _ in range(num_steps):
            self.send_actions(epsilon, stats)
            self.receive_step()
        return self.end_chunk()

    # A chunk step by step, for a caller with work to do while the envs step (the learner's
    # process updates between send_actions and receive_step: ALE steps in its C++ threads).

    def begin_chunk(self, num_steps: int) -> None:
        obs_shape = self._obs.shape[1:]
        self._chunk = _ChunkWriter(
            self.num_envs,
            num_steps,
            frame_shape=obs_shape[1:] if self.is_atari else obs_shape,
            frame_dtype=np.uint8 if self.is_atari else np.float32,
        )

    def send_actions(self, epsilon: float, stats: bool = True) -> None:
        """ε-greedy actions for the current observations, sent to the envs."""
        chunk = self._chunk
        start = time.perf_counter()
        greedy, step_rates, step_spikes = self._greedy_actions(self._obs, stats)
        E = self.num_envs
        explore = self._rng.random(E) < epsilon
        action = np.where(explore, self._rng.integers(0, self.env.single_action_space.n, E), greedy)
        for name, rate in step_rates.items():
            chunk.rate_sums[name] = chunk.rate_sums.get(name, 0.0) + rate
        chunk.spikes += step_spikes
        self._action = action
        self._sent_at = time.perf_counter()
        chunk.inference_seconds += self._sent_at - start
        if hasattr(self.env, "send"):  # AtariVectorEnv: steps in C++ threads from here on
            self.env.send(action)

    def receive_step(self) -> None:
        """The envs' results for the sent actions, written as the chunk's next row."""
        chunk, action = self._chunk, self._action
        if hasattr(self.env, "recv"):
            next_obs, reward, term, trunc, info = self.env.recv()
        else:
            next_obs, reward, term, trunc, info = self.env.step(action)
        chunk.env_seconds += time.perf_counter() - self._sent_at

        reward = np.asarray(reward, dtype=np.float64)
        term = np.asarray(term, dtype=bool)
        trunc = np.asarray(trunc, dtype=bool)
        learn_terminated = term.copy()
        if self.is_atari:
            lives = np.asarray(info["lives"], dtype=np.int64)
            # DQN protocol: a lost life ends the *learning* episode; the game goes on.
            life_lost = (lives < self._lives) & self._valid
            learn_terminated |= life_lost
            self._lives = lives
        t = chunk.steps
        chunk.frames[:, t] = newest_frames(self._obs) if self.is_atari else self._obs
        chunk.actions[:, t] = action
        chunk.rewards[:, t] = np.sign(reward) if self.is_atari else reward
        chunk.terminated[:, t] = learn_terminated
        chunk.truncated[:, t] = trunc
        chunk.episode_start[:, t] = self._episode_start
        chunk.valid[:, t] = self._valid
        chunk.steps += 1

        # Episode accounting on real episodes (whole games), unclipped.
        live = self._valid
        self._running_return[live] += reward[live]
        self._running_length[live] += 1
        ended = (term | trunc) & live
        for e in np.flatnonzero(ended):
            chunk.returns.append(float(self._running_return[e]))
            chunk.lengths.append(int(self._running_length[e]))
            self._running_return[e] = 0.0
            self._running_length[e] = 0
        self._episode_start, self._valid = self._tracker.step(term, trunc)
        self._obs = next_obs

    def end_chunk(self) -> SampleChunk:
        chunk, self._chunk = self._chunk, None
        steps = max(1, chunk.steps)
        return SampleChunk(
            stream_ids=self.stream_ids,
            frames=chunk.frames,
            actions=chunk.actions,
            rewards=chunk.rewards,
            terminated=chunk.terminated,
            truncated=chunk.truncated,
            episode_start=chunk.episode_start,
            valid=chunk.valid,
            episode_returns=chunk.returns,
            episode_lengths=chunk.lengths,
            firing_rates={k: v / steps for k, v in chunk.rate_sums.items()},
            spikes_per_inference=chunk.spikes / steps,
            worker_index=int(self.worker_index or 0),
            weights_seq_no=self._weights_seq_no,
            env_seconds=chunk.env_seconds,
            inference_seconds=chunk.inference_seconds,
        )

    def _greedy_actions(
        self, obs: np.ndarray, stats: bool
    ) -> tuple[np.ndarray, dict[str, float], float]:
        with torch.inference_mode():
            # On the net's device: a GPU where a shared (learner's) module lives on one.
            device = next(self.net.parameters()).device
            obs_t = torch.from_numpy(np.ascontiguousarray(obs)).to(device, non_blocking=True)
            if self.net.is_spiking and stats:
                q, spike_stats = self.net(obs_t, return_stats=True)
                rates = {k: float(v) for k, v in spike_stats.rates.items()}
                return q.argmax(dim=1).cpu().numpy(), rates, spike_stats.spikes_per_sample()
            return self.net(obs_t).argmax(dim=1).cpu().numpy(), {}, 0.0
