"""dsqn_rllib: Deep Spiking Q-Networks (Chen et al. 2022) on Atari with Ray RLlib.

The spiking core (this package's top level) is plain PyTorch and imports nothing from Ray.
Names are loaded on first use, so that torch-free modules (``dsqn_rllib.replay.frame_replay``) stay
importable without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DQN": "dsqn_rllib.snn.networks",
    "DSQN": "dsqn_rllib.snn.networks",
    "MLP": "dsqn_rllib.snn.networks",
    "ExecutionPath": "dsqn_rllib.snn.networks",
    "SpikeStats": "dsqn_rllib.snn.networks",
    "SpikingConfig": "dsqn_rllib.snn.networks",
    "SpikingMLP": "dsqn_rllib.snn.networks",
    "build_q_network": "dsqn_rllib.snn.networks",
    "EnergyReport": "dsqn_rllib.snn.energy",
    "energy_report": "dsqn_rllib.snn.energy",
    "NeuronParams": "dsqn_rllib.snn.neurons",
    "Surrogate": "dsqn_rllib.snn.neurons",
    "Readout": "dsqn_rllib.snn.readouts",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dsqn_rllib' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
