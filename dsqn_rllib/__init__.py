"""dsqn_rllib: Deep Spiking Q-Networks (Chen et al. 2022) on Atari with Ray RLlib.

The spiking core (this package's top level) is plain PyTorch and imports nothing from Ray.
Names are loaded on first use, so that torch-free modules (``dsqn_rllib.replay``) stay
importable without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DQN": "dsqn_rllib.models",
    "DSQN": "dsqn_rllib.models",
    "MLP": "dsqn_rllib.models",
    "ExecutionPath": "dsqn_rllib.models",
    "SpikeStats": "dsqn_rllib.models",
    "SpikingConfig": "dsqn_rllib.models",
    "SpikingMLP": "dsqn_rllib.models",
    "build_q_network": "dsqn_rllib.models",
    "EnergyReport": "dsqn_rllib.energy",
    "energy_report": "dsqn_rllib.energy",
    "NeuronParams": "dsqn_rllib.neurons",
    "Surrogate": "dsqn_rllib.neurons",
    "Readout": "dsqn_rllib.readouts",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dsqn_rllib' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
