"""The RLlib package: the only place that imports ``ray.rllib``.

The supported path is the new API stack: ``DSQNConfig`` (a ``DQNConfig`` with the authors'
defaults, the single source of a run's hyperparameters) builds a ``PipelinedDQN``::

    from dsqn_rllib.rllib import DSQNConfig

    algo = DSQNConfig().environment("pong").rl_module(model_config={"T": 8}).build_algo()
    algo.train()                               # RLlib's standard result keys + result["dsqn"]
    tune.Tuner(DSQNConfig().algo_class, param_space=DSQNConfig())   # the same under Tune

(``examples/tune_grid.py`` runs a grid; ``dsqn_rllib.rllib.config`` says where each option
lives.) The old stack's TorchModelV2 stays for stock ``DQNConfig`` users:

Importing it registers the old-API-stack models with RLlib's ``ModelCatalog``, so a stock
``DQNConfig`` can name them::

    import dsqn_rllib.rllib  # registers "dsqn" and "dqn-twin"

    config = (
        DQNConfig(algo_class=OldStackDQN)  # RLlib's DQN, one Ray 2.60 setup bug fixed
        .api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
        .environment("ale_py:ALE/Pong-v5")  # "deepmind" preprocessing: (84, 84, 4) frames
        .training(
            model={"custom_model": "dsqn", "custom_model_config": {"T": 8}},
            hiddens=[], dueling=False, num_atoms=1,
        )
    )

(``examples/old_stack_dqn_atari.py`` runs it.)

``register_models()`` does the same and may be called any number of times. Ray keeps the
registration in its cluster's key-value store: a process that calls ``ray.shutdown()`` and then
``ray.init()`` again starts from an empty store and should call ``register_models()`` after the
new ``ray.init()`` (``build_old_stack_config`` always does).

The new API stack needs no registration: pass ``RLModuleSpec(module_class=QNetworkRLModule,
model_config={...})`` (``dsqn_rllib.rllib.rl_module``).
"""

from __future__ import annotations

from dsqn_rllib.rllib.algorithm import PipelinedDQN
from dsqn_rllib.rllib.callbacks import RunObserver
from dsqn_rllib.rllib.config import DSQNConfig
from dsqn_rllib.rllib.old_stack import CUSTOM_MODEL_NAMES, OldStackDQN, register_models
from dsqn_rllib.rllib.rl_module import QNetworkRLModule

__all__ = [
    "CUSTOM_MODEL_NAMES",
    "DSQNConfig",
    "OldStackDQN",
    "PipelinedDQN",
    "QNetworkRLModule",
    "RunObserver",
    "register_models",
]

register_models()
