"""TrainConfig (the CLI's flat options) → RLlib AlgorithmConfig, for either API stack."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import torch
from ray.rllib.algorithms.dqn import DQNConfig

from dsqn_rllib.config import ApiStack, TrainConfig
from dsqn_rllib.rllib.callbacks import ObserverSettings, RunObserver
from dsqn_rllib.rllib.config import DSQNConfig, network_options


def learner_uses_gpu(cfg: TrainConfig) -> bool:
    if cfg.learner_device == "cuda":
        return True
    return cfg.learner_device == "auto" and torch.cuda.is_available()


def build_algorithm_config(cfg: TrainConfig, *, iteration_seconds: float = 2.0) -> DQNConfig:
    """The AlgorithmConfig that trains ``cfg`` (validated) on its API stack: a ``DSQNConfig``
    on the new stack (``TrainConfig`` is the CLI's flat view of it), RLlib's old-stack
    ``DQNConfig`` with the registered TorchModelV2 on the old one."""
    if cfg.api_stack is ApiStack.OLD:
        from dsqn_rllib.rllib.old_stack import build_old_stack_config

        return build_old_stack_config(cfg, iteration_seconds=iteration_seconds)
    return to_dsqn_config(cfg, iteration_seconds=iteration_seconds)


def observer_settings(cfg: TrainConfig) -> ObserverSettings:
    """``RunObserver``'s settings for the ``dsqn train`` driver (those of ``cfg``'s
    ``DSQNConfig``): guard, energy and metrics; the registry stays with the driver (attempts,
    resume, the run's final status)."""
    return _driver_settings(to_dsqn_config(cfg))


def _driver_settings(config: DSQNConfig) -> ObserverSettings:
    return replace(ObserverSettings.from_config(config), registry=False)


def to_dsqn_config(cfg: TrainConfig, *, iteration_seconds: float = 2.0) -> DSQNConfig:
    """``cfg``'s options as the ``DSQNConfig`` that holds them for RLlib (and Tune)."""
    network = network_options(
        cfg.model,
        cfg.spiking,
        tuple(cfg.hidden_sizes),
        cfg.spike_init,
        cfg.spike_init_rate,
        cfg.precision,
    )
    config = (
        DSQNConfig()
        .environment(cfg.game or cfg.env)
        .env_runners(
            num_env_runners=cfg.num_env_runners,
            # 0 runners: the learner's process samples (PipelinedDQN takes turns).
            create_local_env_runner=cfg.num_env_runners == 0,
        )
        .rl_module(model_config=network)
        .training(
            lr=cfg.lr,
            adam_epsilon=cfg.adam_eps,
            gamma=cfg.gamma,
            train_batch_size=cfg.train_batch_size,
            target_network_update_freq=cfg.target_update_period,
            double_q=cfg.double_q,
            n_step=cfg.n_step,
            td_error_loss_fn=cfg.loss,
            num_steps_sampled_before_learning_starts=cfg.learning_starts,
            grad_clip=cfg.grad_clip,
            epsilon=[(0, cfg.epsilon_start), (max(1, cfg.epsilon_decay_steps), cfg.epsilon_end)],
        )
        .pipeline(
            train_every=cfg.train_every,
            buffer_size=cfg.buffer_size,
            sticky_actions=cfg.sticky_actions,
            max_episode_frames=cfg.max_episode_frames,
            silent_layer_patience=cfg.silent_layer_patience,
            learner_device=cfg.learner_device,
            env_steps_limit=cfg.total_steps,
        )
        .evaluation(
            # The paper's protocol every eval_interval env steps, beside training (0: none).
            evaluation_interval_env_steps=cfg.eval_interval,
            evaluation_duration=cfg.eval_episodes,
            evaluation_config={"explore_epsilon": cfg.eval_epsilon},
            evaluation_parallel_to_training=True,
        )
        .reporting(min_time_s_per_iteration=iteration_seconds)
        .debugging(seed=cfg.seed)
        .observability(
            run_id=cfg.run_id, metrics_port=cfg.metrics_port, metrics_host=cfg.metrics_host
        )
    )
    # (Set, not passed to env_runners(), which raises its own ValueError at 0: the check and
    # its line are validate_dsqn's.)
    config.num_envs_per_env_runner = cfg.envs_per_runner
    if cfg.epsilon_decay_steps == 0:
        config.epsilon = [(0, cfg.epsilon_end), (1, cfg.epsilon_end)]
    config.validate_dsqn()
    # The driver (dsqn_rllib.run.Trainer) keeps the registry itself.
    config.callbacks(partial(RunObserver, _driver_settings(config)))
    return config
