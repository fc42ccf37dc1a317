"""TrainConfig → RLlib AlgorithmConfig, for either API stack. The one place that wires them."""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.algorithms.dqn import DQNConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from dsqn_rllib.config import ApiStack, TrainConfig
from dsqn_rllib.rllib.env_runner import TRAIN_CONFIG_KEY, VectorEnvRunner


def learner_uses_gpu(cfg: TrainConfig) -> bool:
    if cfg.learner_device == "cuda":
        return True
    return cfg.learner_device == "auto" and torch.cuda.is_available()


def build_algorithm_config(cfg: TrainConfig, *, iteration_seconds: float = 2.0) -> DQNConfig:
    """The AlgorithmConfig that trains ``cfg`` (validated) on its API stack."""
    if cfg.api_stack is ApiStack.OLD:
        from dsqn_rllib.rllib.old_stack import build_old_stack_config

        return build_old_stack_config(cfg, iteration_seconds=iteration_seconds)
    from dsqn_rllib.rllib.algorithm import PipelinedDQN
    from dsqn_rllib.rllib.learner import FusedAdamDQNLearner
    from dsqn_rllib.rllib.rl_module import QNetworkRLModule

    config = (
        DQNConfig(algo_class=PipelinedDQN)
        .environment(
            # Our runners build their envs from the TrainConfig; RLlib only carries it.
            env=None,
            env_config={TRAIN_CONFIG_KEY: cfg.to_dict()},
        )
        .framework("torch")
        .env_runners(
            env_runner_cls=VectorEnvRunner,
            num_env_runners=cfg.num_env_runners,
            num_envs_per_env_runner=cfg.envs_per_runner,
            num_cpus_per_env_runner=1,
            # 0 runners: the learner's process samples (PipelinedDQN takes turns).
            create_local_env_runner=cfg.num_env_runners == 0,
            max_requests_in_flight_per_env_runner=2,
            # Our runners have no connector state; RLlib would otherwise fetch every runner's
            # whole state (weights included) once per iteration, blocking the learner.
            merge_env_runner_states=False,
            broadcast_env_runner_states=False,
        )
        .learners(
            num_learners=0,
            num_gpus_per_learner=1 if learner_uses_gpu(cfg) else 0,
            learner_class=FusedAdamDQNLearner,
        )
        .rl_module(
            rl_module_spec=RLModuleSpec(module_class=QNetworkRLModule),
            model_config=_model_config(cfg),
        )
        .training(
            lr=cfg.lr,
            gamma=cfg.gamma,
            train_batch_size=cfg.train_batch_size,
            target_network_update_freq=cfg.target_update_period,
            double_q=cfg.double_q,
            dueling=False,
            num_atoms=1,
            n_step=1,
            td_error_loss_fn="huber" if cfg.loss == "huber" else "mse",
            num_steps_sampled_before_learning_starts=cfg.learning_starts,
            adam_epsilon=cfg.adam_eps,  # read by FusedAdamDQNLearner (RLlib's ignores it)
            grad_clip=cfg.grad_clip,  # DQNConfig's own default is 40
            epsilon=[(0, cfg.epsilon_start), (max(1, cfg.epsilon_decay_steps), cfg.epsilon_end)],
        )
        .fault_tolerance(
            restart_failed_env_runners=True,
            max_num_env_runner_restarts=1000,
            env_runner_restore_timeout_s=120,
        )
        .reporting(
            min_time_s_per_iteration=iteration_seconds,
            min_sample_timesteps_per_iteration=0,
            min_train_timesteps_per_iteration=0,
        )
        .debugging(seed=cfg.seed, log_level="ERROR")
    )
    return config


def _model_config(cfg: TrainConfig) -> dict[str, Any]:
    return {
        "model": cfg.model.value,
        "net_options": cfg.model_options(),
        "double_q": cfg.double_q,
        "epsilon": [(0, cfg.epsilon_start), (max(1, cfg.epsilon_decay_steps), cfg.epsilon_end)],
        # Read by FusedAdamDQNLearner.build (the learner's network only; runners get its weights).
        "spike_init": {
            "kind": cfg.spike_init.value,
            "target_rate": cfg.spike_init_rate,
            "game": cfg.game,
            "seed": cfg.seed,
        },
    }
