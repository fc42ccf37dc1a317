"""``PipelinedDQN``: RLlib's DQN with an actor → replay → learner path built for throughput.

Stock RLlib 2.60 DQN runs a synchronous loop: sample episodes from every runner, add them to
an episode replay buffer, sample episodes back, run them through learner connectors, update.
Measured on Atari that pipeline costs ~8x the network's own update. This Algorithm keeps
RLlib's parts that are not on the hot path (``EnvRunnerGroup`` with its fault tolerance,
``LearnerGroup`` with the DQN loss, target-network syncs, checkpoints) and replaces the loop:

    VectorEnvRunner actors ── chunks of uint8 frames (async, 2 requests in flight each) ──┐
        ▲                                                                                  ▼
        └── weights (ray.put once per sync, sent with the next request) ── learner ◄── replay

* Sampling overlaps learning: runners step their envs while the learner updates.
* The replay ratio is exact: one update of ``train_batch_size`` per ``train_every`` env steps;
  runners are throttled when they get ahead of the learner by more than two rounds of chunks,
  and the learner waits for data when it gets ahead of the runners.
* Replay stores each frame once as uint8 (``FrameReplayBuffer``) in the learner's process:
  a batch is one numpy gather, handed to the learner without episode objects or connectors.

With ``num_env_runners=0`` there are no sampling actors: the learner's process steps its own
``VectorEnvRunner`` (RLlib's local env runner) and sampling and learning take turns: the
updates made due run while ALE steps the envs in its C++ threads, then the step's results go
to the replay and the next actions are inferred. That is the fastest layout where runners
would share the learner's cores (a 2-core laptop: a runner's inference preempts one of the
update's threads and stalls both), and inference runs on the learner's device and threads,
with the learner's own network (no weight copies).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray
import torch
from ray.rllib.algorithms.dqn import DQN
from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_RL_MODULE, DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    EPISODE_LEN_MEAN,
    EPISODE_RETURN_MAX,
    EPISODE_RETURN_MEAN,
    EPISODE_RETURN_MIN,
    LEARNER_RESULTS,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_ENV_STEPS_TRAINED_LIFETIME,
    NUM_EPISODES,
    NUM_EPISODES_LIFETIME,
)

from dsqn_rllib.evaluation.protocol import EvalConfig
from dsqn_rllib.replay.frame_replay import FrameReplayBuffer
from dsqn_rllib.rllib.config import DSQNConfig
from dsqn_rllib.rllib.env_runner import SampleChunk
from dsqn_rllib.rllib.learner import NONFINITE_SKIPS
from dsqn_rllib.rllib.paper_evaluation import (
    EVAL_SEED_OFFSET,
    EvaluationSettings,
    PaperEvaluation,
    QNetworkSpec,
    paper_protocol_evaluation,
)
from dsqn_rllib.snn.networks import QNetwork

SAMPLE_TAG = "dsqn_sample"
# The result key under which an iteration's pipeline and spiking extras are reported (counters,
# windowed rates, ε, TD loss, Q, firing rate per LIF layer, spikes per inference, replay).
DSQN_RESULTS = "dsqn"
# Key of the pipeline's counters in ``get_state`` (and so in every checkpoint).
PIPELINE_STATE = "dsqn_pipeline"
# Chunk length bounds (steps per env per request), and the learner time one round of chunks
# should cover once learning runs: short enough that actors act on fresh weights and the
# replay ratio holds closely, long enough that a remote call carries real work.
MAX_CHUNK_STEPS = 32
CHUNK_LEARNER_SECONDS = 1.0


@dataclass
class PipelineStats:
    """Lifetime counters of the pipeline and recent windows for rates and returns."""

    env_steps: int = 0
    updates: int = 0
    target_syncs: int = 0
    nonfinite_skips: int = 0  # updates skipped: a gradient held an inf or NaN
    weight_syncs: int = 0
    episodes: int = 0
    runner_restarts: int = 0
    chunks: int = 0
    started: float = field(default_factory=time.time)
    recent_returns: deque = field(default_factory=lambda: deque(maxlen=100))
    recent_lengths: deque = field(default_factory=lambda: deque(maxlen=100))
    # (wall time, env steps, updates) samples for windowed rates.
    marks: deque = field(default_factory=lambda: deque(maxlen=64))
    last_loss: float = float("nan")
    last_q_mean: float = float("nan")
    last_q_max: float = float("nan")
    firing_rates: dict[str, float] = field(default_factory=dict)
    spikes_per_inference: float = 0.0
    weight_sync_seconds: float = 0.0
    steps_per_runner: dict[int, int] = field(default_factory=dict)
    new_episode_returns: list[float] = field(default_factory=list)


class PipelinedDQN(PaperEvaluation, DQN):
    """DQN whose ``training_step`` streams chunks from ``VectorEnvRunner``s into a frame
    replay and updates the learner at the configured replay ratio; evaluated with the paper's
    protocol, overlapped with training where configured (``PaperEvaluation``)."""

    # We own the replay: RLlib's local buffer (and its 2.60 setup bug) is never created.
    def _create_local_replay_buffer_if_necessary(self, config: Any) -> None:
        return None

    config: DSQNConfig

    @classmethod
    def get_default_config(cls) -> DSQNConfig:
        return DSQNConfig()

    def setup(self, config: Any) -> None:
        super().setup(config)
        cfg = self.config
        obs_space, _ = self.spaces[DEFAULT_MODULE_ID]
        num_streams = max(1, self.config.num_env_runners) * self.config.num_envs_per_env_runner
        self.replay = FrameReplayBuffer(
            capacity=cfg.replay_capacity,
            num_streams=num_streams,
            frame_shape=tuple(obs_space.shape[1:]) if cfg.is_atari else tuple(obs_space.shape),
            frame_stack=obs_space.shape[0] if cfg.is_atari else 1,
            seed=cfg.seed or 0,
            frame_dtype=np.uint8 if cfg.is_atari else np.float32,
        )
        self.stats = PipelineStats()
        self._batch_rng = np.random.default_rng((cfg.seed or 0) + 17)
        self._chunk_steps = MAX_CHUNK_STEPS  # env steps per env per request, adapted below
        self._in_flight: dict[int, deque[int]] = {}  # runner id -> env steps of each request
        self._update_seconds = 0.0  # EMA of one learner update
        self._weights_ref: ray.ObjectRef | None = None
        self._weights_seq_no = 0
        self._runner_seq_no: dict[int, int] = {}
        self._last_sync_updates = -1
        self._last_sync_time = 0.0
        # Learning starts once this many env steps are in the replay, counted from here; a
        # resumed run refills its (not checkpointed) replay the same way before learning.
        self._learning_start_step = cfg.warmup_steps
        self._updates_at_start = 0
        # num_env_runners=0: sampling in this process, with the learner's own module.
        self._local_runner = (
            self.env_runner_group.local_env_runner if self.config.num_env_runners == 0 else None
        )
        # What the learner really built (a sweep's grid point must reach the network).
        (self.network_summary,) = [
            r.get()
            for r in self.learner_group.foreach_learner(
                lambda learner: _describe(learner.module[DEFAULT_MODULE_ID].net)
            )
        ]
        self._publish_weights()
        self.setup_paper_evaluation()

    # --- the loop -------------------------------------------------------------------------

    def training_step(self) -> None:
        if self._local_runner is not None:
            self._sample_and_learn_in_turn()
            return
        self._ingest(timeout_s=0.0)
        self._request_chunks()
        due = self._updates_due()
        if due == 0:
            # Nothing to learn from yet: wait for the runners rather than spin.
            self._ingest(timeout_s=0.05)
            return
        for _ in range(min(due, 16)):
            self._learn(num_updates=1)
            self._ingest(timeout_s=0.0)
            self._request_chunks()
        self._maybe_publish_weights()

    def _sample_and_learn_in_turn(self) -> None:
        """A chunk from the local runner, with the due updates run while each step's envs
        step (in ALE's C++ threads): the minimal DQN loop, with the env step hidden behind
        the update. Until learning starts, chunks are long (filling the replay); then a chunk
        is the fewest lockstep steps that make an update due."""
        cfg = self.config
        runner = self._local_runner
        envs = self.config.num_envs_per_env_runner
        to_learning = self._learning_start_step - self.stats.env_steps
        if to_learning > 0:
            num_steps = min(MAX_CHUNK_STEPS, -(-to_learning // envs))
        else:
            num_steps = -(-cfg.train_every // envs)
        num_steps = min(num_steps, -(-self._steps_left() // envs))
        if num_steps <= 0:  # the limit is reached: only the updates it made due
            self._learn_due()
            time.sleep(0.05)
            return
        self._chunk_steps = num_steps
        epsilon = cfg.epsilon_at(self.stats.env_steps)
        runner.begin_chunk(num_steps)
        for _ in range(num_steps):
            runner.send_actions(epsilon)
            # Updates made due by the steps already in the replay (this one is in flight).
            self._learn_due()
            runner.receive_step()
        self._add_chunk(0, runner.end_chunk())

    def _steps_left(self) -> int:
        """Env steps still to sample under ``env_steps_limit`` (a large number without one)."""
        limit = self.config.env_steps_limit
        if limit is None:
            return 1 << 62
        in_flight = sum(sum(q) for q in self._in_flight.values())
        return max(0, limit - self.stats.env_steps - in_flight)

    def _learn_due(self) -> None:
        due = self._updates_due()
        while due > 0:  # a learner call's batch stays small (16 x 128 Atari pairs: 115 MB)
            self._learn(num_updates=min(due, 16))
            due -= 16

    def _updates_due(self) -> int:
        cfg = self.config
        steps = self.stats.env_steps - self._learning_start_step
        if steps < 0 or len(self.replay) < cfg.train_batch_size:
            return 0
        allowed = steps // cfg.train_every + 1
        return max(0, allowed - (self.stats.updates - self._updates_at_start))

    def _request_chunks(self) -> None:
        """Keep each healthy runner busy, unless sampling is ahead of the replay ratio."""
        cfg = self.config
        group = self.env_runner_group
        envs = self.config.num_envs_per_env_runner
        runners = max(1, group.num_healthy_remote_env_runners())
        self._chunk_steps = self._adapted_chunk_steps(runners * envs)
        if group.num_in_flight_async_reqs(SAMPLE_TAG) == 0:
            self._in_flight.clear()  # requests that failed inside a runner return nothing
        in_flight_steps = sum(sum(q) for q in self._in_flight.values())
        # Under env_steps_limit the last chunks are cut to what is left (overshoot < envs).
        self._chunk_steps = min(self._chunk_steps, max(1, -(-self._steps_left() // envs)))
        round_steps = runners * envs * self._chunk_steps
        updates = self.stats.updates - self._updates_at_start
        learner_horizon = self._learning_start_step + (updates + 1) * cfg.train_every
        if self.stats.env_steps + in_flight_steps >= learner_horizon + 2 * round_steps:
            return
        epsilon = cfg.epsilon_at(self.stats.env_steps)
        for runner_id in group.healthy_env_runner_ids():
            if self._steps_left() <= 0:
                break
            pending = self._in_flight.setdefault(runner_id, deque())
            if len(pending) >= self.config.max_requests_in_flight_per_env_runner:
                continue
            send_weights = self._runner_seq_no.get(runner_id, 0) < self._weights_seq_no
            made = group.foreach_env_runner_async(
                "set_weights_and_sample",
                tag=SAMPLE_TAG,
                remote_worker_ids=[runner_id],
                kwargs={
                    "weights": self._weights_ref if send_weights else None,
                    "weights_seq_no": self._weights_seq_no,
                    "num_steps": self._chunk_steps,
                    "epsilon": epsilon,
                    "stats": True,
                },
            )
            if made:
                pending.append(envs * self._chunk_steps)

    def _adapted_chunk_steps(self, total_envs: int) -> int:
        """Until learning starts, long chunks fill the replay fast; then one round of chunks
        should cover about CHUNK_LEARNER_SECONDS of learner time."""
        if self.stats.updates == self._updates_at_start or self._update_seconds <= 0:
            return MAX_CHUNK_STEPS
        updates_per_round = CHUNK_LEARNER_SECONDS / self._update_seconds
        steps = updates_per_round * self.config.train_every / total_envs
        return int(min(MAX_CHUNK_STEPS, max(1, round(steps))))

    def _ingest(self, timeout_s: float) -> None:
        results = self.env_runner_group.fetch_ready_async_reqs(
            tags=SAMPLE_TAG, timeout_seconds=timeout_s
        )
        for runner_id, chunk in results:
            pending = self._in_flight.get(runner_id)
            if pending:
                pending.popleft()
            self._add_chunk(runner_id, chunk)

    def _add_chunk(self, runner_id: int, chunk: SampleChunk) -> None:
        self.replay.add_chunk(
            chunk.stream_ids,
            chunk.frames,
            chunk.actions,
            chunk.rewards,
            chunk.terminated,
            chunk.truncated,
            chunk.episode_start,
            chunk.valid,
        )
        s = self.stats
        s.env_steps += chunk.env_steps
        s.chunks += 1
        s.steps_per_runner[runner_id] = s.steps_per_runner.get(runner_id, 0) + chunk.env_steps
        s.episodes += len(chunk.episode_returns)
        s.recent_returns.extend(chunk.episode_returns)
        s.recent_lengths.extend(chunk.episode_lengths)
        s.new_episode_returns.extend(chunk.episode_returns)
        if chunk.firing_rates:
            s.firing_rates = dict(chunk.firing_rates)
            s.spikes_per_inference = chunk.spikes_per_inference
        self._runner_seq_no[runner_id] = max(
            self._runner_seq_no.get(runner_id, 0), chunk.weights_seq_no
        )

    def _learn(self, num_updates: int) -> None:
        """``num_updates`` gradient steps on independent batches of ``train_batch_size`` in one
        learner call (RLlib's minibatches): its per-call bookkeeping, a metrics reduce among
        it, is paid once. Sampling them at once equals sampling them in turn: no env step
        comes between."""
        cfg = self.config
        batch = self.replay_batch(num_updates * cfg.train_batch_size)
        start = time.perf_counter()
        results = self.learner_group.update(
            batch=batch,
            timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: self.stats.env_steps},
            minibatch_size=cfg.train_batch_size,
        )
        elapsed = (time.perf_counter() - start) / num_updates
        self._update_seconds = (
            elapsed if self._update_seconds == 0 else 0.9 * self._update_seconds + 0.1 * elapsed
        )
        self.stats.updates += num_updates
        module_results = results[0].get(DEFAULT_MODULE_ID, {}) if results else {}
        self.stats.last_loss = _peek(module_results, "qf_loss")
        self.stats.last_q_mean = _peek(module_results, "qf_mean")
        self.stats.last_q_max = _peek(module_results, "qf_max")
        # After each update's reduce this is the number of syncs that update made (0 or 1).
        syncs = _peek(module_results, "num_target_updates")
        if math.isfinite(syncs):
            self.stats.target_syncs += int(syncs)
        skips = _peek(module_results, NONFINITE_SKIPS)
        if math.isfinite(skips):
            self.stats.nonfinite_skips += int(skips)

    def replay_batch(self, size: int) -> MultiAgentBatch:
        """``size`` uniform transitions from the replay, as the learner's batch."""
        cfg = self.config
        sample = self.replay.sample(size, rng=self._batch_rng, n_step=cfg.n_step, gamma=cfg.gamma)
        obs, next_obs = sample.obs, sample.next_obs
        if not cfg.is_atari:  # vector observations are stored with a stack of one
            obs, next_obs = obs[:, 0], next_obs[:, 0]
        batch = SampleBatch(
            {
                Columns.OBS: obs,
                Columns.NEXT_OBS: next_obs,
                Columns.ACTIONS: sample.actions,
                Columns.REWARDS: sample.rewards,
                Columns.TERMINATEDS: sample.terminated,
                "n_step": sample.n_steps,  # the loss discounts s' by gamma ** n_step
                "weights": np.ones(len(sample.actions), dtype=np.float32),
            }
        )
        return MultiAgentBatch({DEFAULT_MODULE_ID: batch}, env_steps=size)

    # --- weights --------------------------------------------------------------------------

    def _maybe_publish_weights(self) -> None:
        # Often enough that actors act on a fresh policy, rarely enough that a fast learner
        # does not spend its time serialising weights (~7 MB for the Nature CNN).
        if self.stats.updates == self._last_sync_updates:
            return
        if time.perf_counter() - self._last_sync_time < 0.25:
            return
        self._publish_weights()

    def _publish_weights(self) -> None:
        if self._local_runner is not None:
            # No copy: the local runner acts with the learner's module itself (taken again
            # here in case a restore replaced it).
            (learner_module,) = [
                result.get()
                for result in self.learner_group.foreach_learner(
                    lambda learner: learner.module[DEFAULT_MODULE_ID]
                )
            ]
            self._local_runner.share_module(learner_module)
            return
        start = time.perf_counter()
        state = self.learner_group.get_state(
            components=f"{COMPONENT_LEARNER}/{COMPONENT_RL_MODULE}", inference_only=True
        )[COMPONENT_LEARNER][COMPONENT_RL_MODULE]
        module_state = state[DEFAULT_MODULE_ID]
        self._weights_ref = ray.put(module_state)
        self._weights_seq_no += 1
        self._last_sync_updates = self.stats.updates
        self._last_sync_time = time.perf_counter()
        self.stats.weight_syncs += 1
        self.stats.weight_sync_seconds = self._last_sync_time - start

    # --- fault tolerance ------------------------------------------------------------------

    def restore_env_runners(self, env_runner_group: Any) -> list[int]:
        """Restarted runners come back with fresh envs; they get the latest weights with
        their next request (their known weights version is reset to 0)."""
        restored = env_runner_group.probe_unhealthy_env_runners() if self.config.is_online else []
        for runner_id in restored or []:
            self._runner_seq_no[runner_id] = 0
            self._in_flight.pop(runner_id, None)  # its requests died with it
        self.stats.runner_restarts = env_runner_group.num_remote_worker_restarts()
        return list(restored or [])

    # --- results --------------------------------------------------------------------------

    def step(self) -> dict:
        result = super().step()
        report = self.pipeline_report()
        result[DSQN_RESULTS] = report
        # RLlib's standard keys, from the pipeline's own counters (our runners bypass RLlib's
        # episode metrics): what Tune's stoppers, loggers and users' scripts read.
        result[NUM_ENV_STEPS_SAMPLED_LIFETIME] = report["env_steps"]
        runners = result.setdefault(ENV_RUNNER_RESULTS, {})
        runners[NUM_ENV_STEPS_SAMPLED_LIFETIME] = report["env_steps"]
        runners[NUM_EPISODES_LIFETIME] = report["episodes"]
        runners[NUM_EPISODES] = len(report["new_episode_returns"])
        runners[EPISODE_RETURN_MEAN] = report["episode_return_mean"]
        runners[EPISODE_LEN_MEAN] = report["episode_length_mean"]
        returns = list(self.stats.recent_returns)
        runners[EPISODE_RETURN_MAX] = max(returns) if returns else float("nan")
        runners[EPISODE_RETURN_MIN] = min(returns) if returns else float("nan")
        learners = result.setdefault(LEARNER_RESULTS, {})
        module = learners.setdefault(DEFAULT_MODULE_ID, {})
        module.update(
            {"qf_loss": report["td_loss"], "qf_mean": report["q_mean"], "qf_max": report["q_max"]}
        )
        learners.setdefault("__all_modules__", {})[NUM_ENV_STEPS_TRAINED_LIFETIME] = (
            report["updates"] * self.config.train_batch_size
        )
        self.paper_evaluation_step(result)
        return result

    def pipeline_report(self) -> dict[str, Any]:
        """Counters, windowed rates and learning health of the pipeline (plain floats)."""
        s = self.stats
        now = time.time()
        s.marks.append((now, s.env_steps, s.updates))
        t0, steps0, updates0 = s.marks[0]
        dt = max(1e-9, now - t0)
        returns = list(s.recent_returns)
        new_returns, s.new_episode_returns = s.new_episode_returns, []
        return {
            "env_steps": s.env_steps,
            "updates": s.updates,
            "episodes": s.episodes,
            "env_steps_per_s": (s.env_steps - steps0) / dt if len(s.marks) > 1 else 0.0,
            "updates_per_s": (s.updates - updates0) / dt if len(s.marks) > 1 else 0.0,
            "samples_per_s": (s.updates - updates0) * self.config.train_batch_size / dt
            if len(s.marks) > 1
            else 0.0,
            "episode_return_mean": float(np.mean(returns)) if returns else float("nan"),
            "episode_length_mean": float(np.mean(s.recent_lengths))
            if s.recent_lengths
            else float("nan"),
            "new_episode_returns": new_returns,
            "epsilon": self.config.epsilon_at(s.env_steps),
            "td_loss": s.last_loss,
            "q_mean": s.last_q_mean,
            "q_max": s.last_q_max,
            "target_syncs": s.target_syncs,
            "nonfinite_grad_skips": s.nonfinite_skips,
            "weight_syncs": s.weight_syncs,
            "weight_sync_seconds": s.weight_sync_seconds,
            "chunk_steps": self._chunk_steps,
            "replay_size": len(self.replay),
            "replay_capacity": self.replay.ring_capacity * self.replay.num_streams,
            "runner_restarts": s.runner_restarts,
            # The learner's own runner counts where it is the only one (num_env_runners=0).
            "healthy_runners": self.env_runner_group.num_healthy_remote_env_runners()
            + (self._local_runner is not None),
            "steps_per_runner": dict(s.steps_per_runner),
            **self.network_summary,
            "firing_rates": dict(s.firing_rates),
            "spikes_per_inference": s.spikes_per_inference,
        }

    def cleanup(self) -> None:
        """RLlib's cleanup, then ``on_algorithm_stop`` of the callbacks that have one (the run
        registry's ``finished``; RLlibCallback has no such hook). Tune's trial stop and
        ``algo.stop()`` both end here."""
        try:
            super().cleanup()
        finally:
            callbacks = self.callbacks if isinstance(self.callbacks, list) else [self.callbacks]
            for callback in callbacks:
                if hasattr(callback, "on_algorithm_stop"):
                    callback.on_algorithm_stop(algorithm=self)

    # --- checkpoint state -----------------------------------------------------------------

    def get_state(self, components: Any = None, *, not_components: Any = None, **kwargs: Any):
        state = super().get_state(components, not_components=not_components, **kwargs)
        if self._check_component(PIPELINE_STATE, components, not_components):
            state[PIPELINE_STATE] = self.get_pipeline_state()
        return state

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        if PIPELINE_STATE in state:
            self.set_pipeline_state(state[PIPELINE_STATE])
            self._publish_weights()  # the runners act with the restored network
            self.restart_evaluation_schedule()

    def get_pipeline_state(self) -> dict[str, Any]:
        """Lifetime counters (what a restored run continues from). The replay is not saved:
        a restored run refills ``learning_starts`` steps before it learns again."""
        s = self.stats
        return {
            "env_steps": s.env_steps,
            "updates": s.updates,
            "episodes": s.episodes,
            "target_syncs": s.target_syncs,
            "nonfinite_skips": s.nonfinite_skips,
            "weight_syncs": s.weight_syncs,
            "chunks": s.chunks,
            "steps_per_runner": {str(k): v for k, v in s.steps_per_runner.items()},
            "recent_returns": list(s.recent_returns),
            "recent_lengths": list(s.recent_lengths),
            "epsilon": self.config.epsilon_at(s.env_steps),
        }

    def set_pipeline_state(self, state: dict[str, Any]) -> None:
        s = self.stats
        s.env_steps = int(state.get("env_steps", 0))
        s.updates = int(state.get("updates", 0))
        s.episodes = int(state.get("episodes", 0))
        s.target_syncs = int(state.get("target_syncs", 0))
        s.nonfinite_skips = int(state.get("nonfinite_skips", 0))
        s.weight_syncs = int(state.get("weight_syncs", 0))
        s.chunks = int(state.get("chunks", 0))
        s.steps_per_runner = {int(k): int(v) for k, v in state.get("steps_per_runner", {}).items()}
        s.recent_returns.clear()
        s.recent_returns.extend(state.get("recent_returns", []))
        s.recent_lengths.clear()
        s.recent_lengths.extend(state.get("recent_lengths", []))
        s.marks.clear()
        # ε follows the restored step count (epsilon_at); the replay warm-up starts afresh.
        self._learning_start_step = s.env_steps + self.config.warmup_steps
        self._updates_at_start = s.updates

    # --- what the paper's evaluation reads (PaperEvaluation) ------------------------------

    def q_network_spec(self) -> QNetworkSpec:
        obs_space, act_space = self.spaces[DEFAULT_MODULE_ID]
        cfg = self.config
        return QNetworkSpec(
            cfg.model_kind, tuple(obs_space.shape), int(act_space.n), cfg.net_options()
        )

    def online_weights(self) -> dict[str, torch.Tensor]:
        """A CPU copy of the learner's online Q-network's weights."""
        state = self.learner_group.get_state(
            components=f"{COMPONENT_LEARNER}/{COMPONENT_RL_MODULE}", inference_only=True
        )[COMPONENT_LEARNER][COMPONENT_RL_MODULE][DEFAULT_MODULE_ID]
        prefix = "net."
        return {
            k[len(prefix) :]: torch.as_tensor(v).cpu()
            for k, v in state.items()
            if k.startswith(prefix)
        }

    def sampled_env_steps(self) -> int:
        return self.stats.env_steps

    def evaluation_settings(self) -> EvaluationSettings | None:
        cfg = self.config
        if cfg.custom_evaluation_function is not paper_protocol_evaluation:
            return None
        episodes = int(cfg.evaluation_duration) if cfg.evaluation_duration != "auto" else 30
        return EvaluationSettings(
            env=cfg.game or cfg.env,
            protocol=EvalConfig(
                episodes=episodes,
                epsilon=cfg.eval_epsilon,
                seed=(cfg.seed or 0) + EVAL_SEED_OFFSET,
                max_episode_frames=cfg.max_episode_frames,
            ),
            interval_env_steps=cfg.evaluation_interval_env_steps,
            interval_iterations=cfg.evaluation_interval,
            in_parallel=bool(cfg.evaluation_parallel_to_training),
        )

    def online_network(self) -> QNetwork:
        """A CPU copy of the learner's online Q-network."""
        return self.q_network_spec().build(self.online_weights())


def _describe(net: QNetwork) -> dict[str, Any]:
    """The Q-network's class, the precision of its updates (``auto`` resolved on the learner's
    device) and, when spiking, its T and readout."""
    summary: dict[str, Any] = {
        "network": type(net).__name__,
        "spiking": bool(net.is_spiking),
        "precision": net.precision.value,
    }
    if net.is_spiking:
        summary.update({"T": int(net.T), "readout": net.readout.value})
    return summary


def _peek(results: dict, key: str) -> float:
    value = results.get(key)
    if value is None:
        return float("nan")
    value = value.peek() if hasattr(value, "peek") else value
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
