"""RLlib new-API-stack RLModule around the spiking core (or its DQN twin).

RLlib's ``DefaultDQNTorchRLModule`` already implements DQN's forward passes (greedy
inference, ε-greedy exploration, the train pass with double Q); this subclass only replaces
*how Q-values are computed*: by one of our networks instead of RLlib's encoder + head.
Its target network is a copy of the same network that lives on the learner only.

``model_config`` keys (set by ``dsqn_rllib.rllib.builder``):

    model        "dsqn" or "dqn"
    net_options  keyword options of ``dsqn_rllib.models.build_q_network``
    double_q     Double-DQN targets (DQNConfig puts it here)
    epsilon      ε schedule for RLlib's own exploration pass (our env runner does its own)
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.algorithms.dqn.default_dqn_rl_module import QF_PREDS
from ray.rllib.algorithms.dqn.torch.default_dqn_torch_rl_module import DefaultDQNTorchRLModule
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.utils import make_target_network
from ray.rllib.utils.schedules.scheduler import Scheduler

from dsqn_rllib.models import QNetwork, build_q_network


class QNetworkRLModule(DefaultDQNTorchRLModule):
    """A DQN RLModule whose Q-function is ``build_q_network(model, obs_shape, n, **options)``."""

    net: QNetwork

    def setup(self) -> None:
        # Flags read by the inherited forward passes: plain expectation DQN, no dueling head.
        self.uses_double_q = bool(self.model_config.get("double_q", False))
        self.uses_dueling = False
        self.num_atoms = 1
        self.epsilon_schedule = Scheduler(
            fixed_value_or_schedule=self.model_config.get("epsilon", 0.0), framework="torch"
        )
        self.net = build_q_network(
            self.model_config.get("model", "dsqn"),
            tuple(self.observation_space.shape),
            int(self.action_space.n),
            **self.model_config.get("net_options", {}),
        )

    # TargetNetworkAPI: the target copy exists on the learner only (DQNLearner.build).
    def make_target_networks(self) -> None:
        self._target_net = make_target_network(self.net)

    def get_target_network_pairs(self) -> list[tuple[torch.nn.Module, torch.nn.Module]]:
        return [(self.net, self._target_net)]

    def forward_target(self, batch: dict[str, Any]) -> dict[str, Any]:
        with torch.no_grad():  # targets are constants: build no graph through the copy
            return {QF_PREDS: self._target_net(batch[Columns.OBS])}

    # InferenceOnlyAPI: env runners' copies and weight syncs leave the target out.
    def get_non_inference_attributes(self) -> list[str]:
        return ["_target_net"]

    # QNetAPI
    def compute_q_values(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {QF_PREDS: self.net(batch[Columns.OBS])}

    def get_initial_state(self) -> dict:
        return {}  # no recurrent state: every forward simulates T steps from V_reset
