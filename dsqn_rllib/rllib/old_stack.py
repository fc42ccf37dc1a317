"""RLlib's old API stack: the core as a ``TorchModelV2`` registered with ``ModelCatalog``.

Registered names (``import dsqn_rllib.rllib`` registers them): ``"dsqn"`` (the spiking network)
and ``"dqn-twin"`` (its ReLU twin); their options (T, readout, surrogate, tau, v_threshold,
v_reset, detach_reset, bias, hidden_sizes) travel in ``model={"custom_model": ...,
"custom_model_config": {...}}``. The env's observation space goes to the network unchanged: our
channel-first (4, 84, 84) frames, or the channel-last (84, 84, 4) of RLlib's ``"deepmind"``
preprocessing (``preprocessor_pref="deepmind"``, RLlib's default for Atari ids).

Old-stack DQN builds its model through ``ModelCatalog.get_model_v2(model_interface=
DQNTorchModel, ...)`` and reads Q-values with ``get_q_value_distributions(model_out)``; with
``hiddens=[]``, ``dueling=False``, ``num_atoms=1`` and ``noisy=False`` that head is the
identity, so ``forward`` returns the Q-values themselves. Stock ``DQNConfig`` defaults to
``hiddens=[256]`` and ``dueling=True``: the model refuses those in one line that names the fix.

Ray 2.60 bug, and its one-method fix (``OldStackDQN``): ``validate_buffer_config`` turns
``replay_buffer_config["type"]`` into a class, then ``Algorithm.
_create_local_replay_buffer_if_necessary`` evaluates ``"EpisodeReplayBuffer" in <class>`` and
raises ``TypeError`` at setup. The old stack never uses episode buffers, so the override builds
the configured (class-typed) buffer directly. ``OldStackDQN.step`` also files the iteration's
progress under ``result["dsqn"]`` in the new stack's shape (``old_stack_report``), so the driver
and ``RunObserver`` read one shape on both stacks.
"""

from __future__ import annotations

import math
import time
from functools import partial
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import torch
from ray.rllib.algorithms.dqn import DQN, DQNConfig
from ray.rllib.algorithms.dqn.dqn_torch_model import DQNTorchModel
from ray.rllib.models import ModelCatalog
from ray.rllib.utils.from_config import from_config
from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED
from ray.rllib.utils.replay_buffers import ReplayBuffer
from ray.tune.registry import register_env

from dsqn_rllib.evaluation.protocol import EvalConfig
from dsqn_rllib.rllib.callbacks import ObserverSettings, RunObserver
from dsqn_rllib.rllib.paper_evaluation import (
    EVAL_SEED_OFFSET,
    EvaluationSettings,
    PaperEvaluation,
    QNetworkSpec,
)
from dsqn_rllib.rllib.rl_module import check_plain_q_head
from dsqn_rllib.snn.networks import ModelKind, QNetwork, build_q_network

if TYPE_CHECKING:  # imported where used: ``import dsqn_rllib.rllib`` needs only the models
    from dsqn_rllib.config import TrainConfig

CUSTOM_MODEL_NAMES = {ModelKind.DSQN: "dsqn", ModelKind.DQN: "dqn-twin"}
ENV_NAME = "dsqn_rllib_env"
# DQNTorchModel's own keywords; everything else in the kwargs is custom_model_config.
_DQN_HEAD_KEYWORDS = (
    "q_hiddens",
    "dueling",
    "dueling_activation",
    "num_atoms",
    "use_noisy",
    "v_min",
    "v_max",
    "sigma0",
    "add_layer_norm",
)


class OldStackDQN(PaperEvaluation, DQN):
    """RLlib's DQN with the one setup method that crashes in Ray 2.60 replaced; evaluated
    with the paper's protocol as ``PipelinedDQN`` is, by the run's ``TrainConfig``
    (``env_config["train_config"]``: every ``eval_interval`` env steps, beside training)."""

    def setup(self, config: Any) -> None:
        super().setup(config)
        self.setup_paper_evaluation()

    def _create_local_replay_buffer_if_necessary(self, config: Any) -> ReplayBuffer | None:
        buffer_config = config.get("replay_buffer_config")
        if not buffer_config or buffer_config.get("no_local_replay_buffer"):
            return None
        return from_config(ReplayBuffer, buffer_config)

    def step(self) -> dict:
        result = super().step()
        result["dsqn"] = old_stack_report(result, self.config)
        self.paper_evaluation_step(result)
        return result

    # --- what the paper's evaluation reads (PaperEvaluation) ------------------------------

    def _train_config(self) -> TrainConfig:
        """The run's TrainConfig, read (and validated) once."""
        cached: TrainConfig | None = getattr(self, "_train_config_read", None)
        if cached is None:
            from dsqn_rllib.config import TrainConfig

            cached = TrainConfig.from_dict(self.config.env_config["train_config"])
            self._train_config_read = cached
        return cached

    def q_network_spec(self) -> QNetworkSpec:
        policy = self.get_policy()
        cfg = self._train_config()
        return QNetworkSpec(
            cfg.model,
            tuple(policy.observation_space.shape),
            int(policy.action_space.n),
            cfg.model_options(),
        )

    def online_weights(self) -> dict[str, torch.Tensor]:
        net = self.get_policy().model.net
        return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}

    def sampled_env_steps(self) -> int:
        return int(self._counters[NUM_ENV_STEPS_SAMPLED])

    def evaluation_settings(self) -> EvaluationSettings | None:
        train_config = self.config.env_config.get("train_config")
        if not train_config:  # a user's own old-stack config: RLlib's evaluation
            return None
        cfg = self._train_config()
        return EvaluationSettings(
            env=cfg.game or cfg.env or "",
            protocol=EvalConfig(
                episodes=cfg.eval_episodes,
                epsilon=cfg.eval_epsilon,
                seed=cfg.seed + EVAL_SEED_OFFSET,
                max_episode_frames=cfg.max_episode_frames,
            ),
            interval_env_steps=cfg.eval_interval,
            in_parallel=True,
        )


def old_stack_report(result: dict, config: Any) -> dict[str, Any]:
    """The progress of an old-stack DQN iteration under the keys of
    ``PipelinedDQN.pipeline_report`` (those the old stack has: no firing rates, no replay
    internals)."""
    runners = result.get("env_runners", {})
    info = result.get("info", {})
    stats = info.get("learner", {}).get("default_policy", {}).get("learner_stats", {})
    steps = int(
        result.get("num_env_steps_sampled_lifetime", result.get("num_env_steps_sampled", 0))
    )
    exploration = config.exploration_config
    fraction = min(1.0, steps / max(1, int(exploration["epsilon_timesteps"])))
    start, end = float(exploration["initial_epsilon"]), float(exploration["final_epsilon"])
    return {
        "env_steps": steps,
        "updates": int(info.get("num_agent_steps_trained", 0)) // max(1, config.train_batch_size),
        "episodes": int(runners.get("num_episodes_lifetime", runners.get("episodes_total", 0))),
        "episode_return_mean": float(runners.get("episode_return_mean", math.nan)),
        "td_loss": float(stats.get("mean_td_error", math.nan)),
        "epsilon": start + fraction * (end - start),
        "env_steps_per_s": float(result.get("num_env_steps_sampled_throughput_per_sec", math.nan)),
        "new_episode_returns": list(runners.get("hist_stats", {}).get("episode_reward", [])),
        "firing_rates": {},
        "time": time.time(),
    }


class QNetworkModelV2(DQNTorchModel):
    """``TorchModelV2`` whose forward is one of our Q-networks (no extra DQN head)."""

    model_kind: ModelKind = ModelKind.DSQN

    def __init__(
        self,
        obs_space: gym.Space,
        action_space: gym.Space,
        num_outputs: int,
        model_config: dict,
        name: str,
        **kwargs: Any,
    ) -> None:
        head = {k: kwargs.pop(k) for k in list(kwargs) if k in _DQN_HEAD_KEYWORDS}
        check_plain_q_head(
            f"custom_model {CUSTOM_MODEL_NAMES[self.model_kind]!r}",
            dueling=head.get("dueling", False),
            num_atoms=head.get("num_atoms", 1),
            hiddens=head.get("q_hiddens"),
            noisy=head.get("use_noisy", False),
        )
        super().__init__(obs_space, action_space, num_outputs, model_config, name, **head)
        # What is left of kwargs is custom_model_config: the network's options.
        self.net: QNetwork = build_q_network(
            self.model_kind, tuple(obs_space.shape), int(action_space.n), **kwargs
        )

    def forward(self, input_dict: dict, state: list, seq_lens: Any) -> tuple[Any, list]:
        return self.net(input_dict["obs"]), state


class SpikingModelV2(QNetworkModelV2):
    model_kind = ModelKind.DSQN


class DenseTwinModelV2(QNetworkModelV2):
    model_kind = ModelKind.DQN


def register_models() -> None:
    """Register ``"dsqn"`` and ``"dqn-twin"`` with ``ModelCatalog`` (idempotent: registering
    again maps the same names to the same classes). ``import dsqn_rllib.rllib`` calls it."""
    ModelCatalog.register_custom_model(CUSTOM_MODEL_NAMES[ModelKind.DSQN], SpikingModelV2)
    ModelCatalog.register_custom_model(CUSTOM_MODEL_NAMES[ModelKind.DQN], DenseTwinModelV2)


def _make_env(env_config: dict) -> gym.Env:
    from dsqn_rllib.config import TrainConfig

    cfg = TrainConfig.from_dict(env_config["train_config"])
    if cfg.is_atari:
        from dsqn_rllib.envs.atari import AtariConfig, make_atari_env

        atari = AtariConfig(
            game=cfg.game,
            max_episode_frames=cfg.max_episode_frames,  # type: ignore[arg-type]
            sticky_action_prob=0.25 if cfg.sticky_actions else 0.0,
        )
        return make_atari_env(atari, seed=cfg.seed + getattr(env_config, "worker_index", 0))
    return gym.make(cfg.env)  # type: ignore[arg-type]


def build_old_stack_config(cfg: TrainConfig, *, iteration_seconds: float = 2.0) -> DQNConfig:
    """Stock old-stack DQN (``OldStackDQN``) with our TorchModelV2 for ``cfg``; the same
    ``RunObserver`` settings as the new stack's driver."""
    register_models()
    register_env(ENV_NAME, _make_env)
    options = cfg.model_options()
    return (
        DQNConfig(algo_class=OldStackDQN)
        .api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
        .environment(ENV_NAME, env_config={"train_config": cfg.to_dict()})
        .framework("torch")
        .env_runners(
            num_env_runners=cfg.num_env_runners,
            num_envs_per_env_runner=cfg.envs_per_runner,
            rollout_fragment_length=cfg.train_every,
            # Our env already follows the DQN protocol; RLlib's "deepmind" wrapping would
            # preprocess it a second time (and make observations channel-last).
            preprocessor_pref=None,
            exploration_config={
                "type": "EpsilonGreedy",
                "initial_epsilon": cfg.epsilon_start,
                "final_epsilon": cfg.epsilon_end,
                "epsilon_timesteps": max(1, cfg.epsilon_decay_steps),
            },
        )
        .training(
            model={"custom_model": CUSTOM_MODEL_NAMES[cfg.model], "custom_model_config": options},
            hiddens=[],
            dueling=False,
            double_q=cfg.double_q,
            num_atoms=1,
            n_step=cfg.n_step,  # old-stack DQN postprocesses n-step returns itself
            lr=cfg.lr,
            adam_epsilon=cfg.adam_eps,
            grad_clip=cfg.grad_clip,  # DQNConfig's own default is 40
            gamma=cfg.gamma,
            train_batch_size=cfg.train_batch_size,
            target_network_update_freq=cfg.target_update_period,
            num_steps_sampled_before_learning_starts=cfg.learning_starts,
            td_error_loss_fn="huber" if cfg.loss == "huber" else "mse",
            replay_buffer_config={"type": "MultiAgentReplayBuffer", "capacity": cfg.buffer_size},
        )
        .fault_tolerance(restart_failed_env_runners=True)
        .reporting(min_time_s_per_iteration=iteration_seconds, min_sample_timesteps_per_iteration=0)
        .debugging(seed=cfg.seed, log_level="ERROR")
        .callbacks(partial(RunObserver, ObserverSettings.for_driver(cfg.to_dsqn_config())))
    )
