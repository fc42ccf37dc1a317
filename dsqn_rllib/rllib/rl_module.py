"""RLlib new-API-stack RLModule around the spiking core (or its DQN twin).

RLlib's ``DefaultDQNTorchRLModule`` already implements DQN's forward passes (greedy
inference, ε-greedy exploration, the train pass with double Q); this subclass only replaces
*how Q-values are computed*: by one of our networks instead of RLlib's encoder + head.
Its target network is a copy of the same network that lives on the learner only.

``model_config`` keys (set by ``dsqn_rllib.rllib.builder``, or by hand with a stock
``DQNConfig``: ``RLModuleSpec(module_class=QNetworkRLModule, model_config={"model": "dsqn",
"net_options": {"T": 4}})``):

    model        "dsqn" or "dqn"
    net_options  keyword options of ``dsqn_rllib.snn.networks.build_q_network``
    double_q     Double-DQN targets (DQNConfig puts it here)
    epsilon      ε schedule for RLlib's own exploration pass (our env runner does its own)
    dueling      must be False: the network has no value/advantage streams
    num_atoms    must be 1: the network outputs expected Q-values, not distributions

``DQNConfig`` puts ``dueling`` and ``num_atoms`` into every RLModule's model_config, and the
stock config defaults to ``dueling=True``: such a config is refused in one line that says to
set ``.training(dueling=False)``. The observation space goes to the network as the env gives
it: an image stack channel-first (C, H, W) or channel-last (H, W, C), or a vector.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from ray.rllib.algorithms.dqn.default_dqn_rl_module import QF_PREDS
from ray.rllib.algorithms.dqn.torch.default_dqn_torch_rl_module import DefaultDQNTorchRLModule
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.utils import make_target_network
from ray.rllib.utils.schedules.scheduler import Scheduler

from dsqn_rllib.snn.networks import QNetwork, build_q_network


def check_plain_q_head(
    owner: str, *, dueling: Any = False, num_atoms: Any = 1, hiddens: Any = None, noisy: Any = False
) -> None:
    """Refuse, in one line naming the option and its fix, a DQN config that asks for a Q head
    our networks do not have (both API stacks; ``hiddens`` and ``noisy`` are the old stack's)."""
    asked: list[str] = []
    fixes: list[str] = []
    if dueling:
        asked.append(f"dueling={dueling!r} (a value/advantage head)")
        fixes.append("dueling=False")
    if num_atoms is not None and num_atoms != 1:
        asked.append(f"num_atoms={num_atoms!r} (distributional Q)")
        fixes.append("num_atoms=1")
    if hiddens:
        asked.append(f"hiddens={list(hiddens)!r} (layers after the network)")
        fixes.append("hiddens=[]")
    if noisy:
        asked.append(f"noisy={noisy!r} (a noisy head)")
        fixes.append("noisy=False")
    if not asked:
        return
    # What a stock DQNConfig asks for unless told otherwise.
    stock = [d for d, on in (("dueling=True", dueling), ("hiddens=[256]", hiddens)) if on]
    why = f" (stock DQNConfig defaults to {' and '.join(stock)})" if stock else ""
    raise ValueError(
        f"{owner} does not support {', '.join(asked)}: "
        f"set .training({', '.join(fixes)}) on the DQNConfig{why}"
    )


class _DropUnavoidableRLModuleConfigNotice(logging.Filter):
    """Ray 2.60's ``RLModule.__init__`` builds a deprecated ``RLModuleConfig`` for every module,
    RLlib's stock ones included, and that logs "RLModule(config=[RLModuleConfig object]) has
    been deprecated" although no caller passes a config: a notice nobody can act on. Exactly
    that message is dropped; every other deprecation still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "RLModule(config=[RLModuleConfig object])" not in record.getMessage()


logging.getLogger("ray._common.deprecation").addFilter(_DropUnavoidableRLModuleConfigNotice())


class QNetworkRLModule(DefaultDQNTorchRLModule):
    """A DQN RLModule whose Q-function is ``build_q_network(model, obs_shape, n, **options)``."""

    net: QNetwork

    def setup(self) -> None:
        check_plain_q_head(
            type(self).__name__,
            dueling=self.model_config.get("dueling", False),
            num_atoms=self.model_config.get("num_atoms", 1),
        )
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
