"""dsqn_rllib: Deep Spiking Q-Networks (Chen et al. 2022) on Atari with Ray RLlib.

The spiking core (this package's top level) is plain PyTorch and imports nothing from Ray.
"""

from dsqn_rllib.energy import EnergyReport, energy_report
from dsqn_rllib.models import (
    DQN,
    DSQN,
    MLP,
    ExecutionPath,
    SpikeStats,
    SpikingConfig,
    SpikingMLP,
    build_q_network,
)
from dsqn_rllib.neurons import NeuronParams, Surrogate
from dsqn_rllib.readouts import Readout

__all__ = [
    "DQN",
    "DSQN",
    "MLP",
    "EnergyReport",
    "ExecutionPath",
    "NeuronParams",
    "Readout",
    "SpikeStats",
    "SpikingConfig",
    "SpikingMLP",
    "Surrogate",
    "build_q_network",
    "energy_report",
]
__version__ = "0.1.0"
