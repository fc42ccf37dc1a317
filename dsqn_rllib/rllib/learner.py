"""``FusedAdamDQNLearner``: RLlib's DQN torch learner with the configured Adam.

RLlib 2.60's ``TorchLearner`` builds ``torch.optim.Adam(params)`` for every module: the
``adam_epsilon`` of ``DQNConfig`` is read only by the old API stack, so the new stack trained
with ε = 1e-8 whatever was configured. This learner builds Adam with ``adam_epsilon``
(``TrainConfig.adam_eps``, 1.5e-4 by default) and the fused kernel
(``dsqn_rllib.optim.make_adam``); the learning rate stays under RLlib's scheduler, as before.
"""

from __future__ import annotations

from typing import Any

from ray.rllib.algorithms.dqn.torch.dqn_torch_learner import DQNTorchLearner

from dsqn_rllib.optim import make_adam


class FusedAdamDQNLearner(DQNTorchLearner):
    def configure_optimizers_for_module(self, module_id: str, config: Any = None) -> None:
        params = self.get_parameters(self._module[module_id])
        # register_optimizer sets the lr from config.lr (a value or a schedule) at once.
        optimizer = make_adam(params, lr=1e-3, eps=config.adam_epsilon)
        self.register_optimizer(
            module_id=module_id, optimizer=optimizer, params=params, lr_or_lr_schedule=config.lr
        )
