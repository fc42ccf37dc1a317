"""TrainConfig (the CLI's flat options) → RLlib AlgorithmConfig, for either API stack, with the
``dsqn train`` driver's ``RunObserver``."""

from __future__ import annotations

from functools import partial

from ray.rllib.algorithms.dqn import DQNConfig

from dsqn_rllib.config import ApiStack, TrainConfig
from dsqn_rllib.rllib.callbacks import ObserverSettings, RunObserver
from dsqn_rllib.rllib.config import DSQNConfig


def build_algorithm_config(cfg: TrainConfig, *, iteration_seconds: float = 2.0) -> DQNConfig:
    """The AlgorithmConfig that trains ``cfg`` (validated) on its API stack: a ``DSQNConfig``
    on the new stack (``TrainConfig`` is the CLI's flat view of it), RLlib's old-stack
    ``DQNConfig`` with the registered TorchModelV2 on the old one."""
    if cfg.api_stack is ApiStack.OLD:
        from dsqn_rllib.rllib.old_stack import build_old_stack_config

        return build_old_stack_config(cfg, iteration_seconds=iteration_seconds)
    return to_dsqn_config(cfg, iteration_seconds=iteration_seconds)


def to_dsqn_config(cfg: TrainConfig, *, iteration_seconds: float = 2.0) -> DSQNConfig:
    """``cfg.to_dsqn_config()`` with the driver's ``RunObserver``: guard, energy and metrics;
    the registry stays with the driver (attempts, resume, the run's final status)."""
    config = cfg.to_dsqn_config(iteration_seconds=iteration_seconds)
    config.callbacks(partial(RunObserver, ObserverSettings.for_driver(config)))
    return config
