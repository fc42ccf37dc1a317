"""Synaptic operation and energy accounting (the convention of the SNN literature).

Horowitz 2014 (45 nm CMOS): a multiply-accumulate (MAC) costs 4.6 pJ, an accumulate (AC) 0.9 pJ.
An ANN layer costs its dense MACs. In a spiking network a layer whose input is spikes only adds
a weight when a spike arrives: ACs = (firing rate of its input) × T × (its dense operations).
The first layer of a DSQN sees the real-valued frame, so it costs MACs; its input current is
constant over the T steps, so it is computed (and counted) once. The counts come from the
(C, H, W) the convs see (``net.layer_shapes``): a net fed channel-last (H, W, C) frames costs the
same (its permute moves memory and adds no operation).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor

from dsqn_rllib.snn.networks import QNetwork, SpikingQNetwork

E_MAC_PJ = 4.6
"""Energy of one 32-bit float multiply-accumulate, picojoules (Horowitz 2014)."""
E_AC_PJ = 0.9
"""Energy of one 32-bit float accumulate, picojoules (Horowitz 2014)."""


@dataclass(frozen=True)
class LayerEnergy:
    """One layer's operations per inference (one sample) and their energy."""

    name: str
    dense_ops: int
    """Multiply-accumulates of the layer run once densely."""
    macs: float
    acs: float
    energy_pj: float


@dataclass(frozen=True)
class EnergyReport:
    """Per-layer and total operations and energy of one inference, with the ANN twin's."""

    layers: tuple[LayerEnergy, ...]
    ann_energy_pj: float
    """The DQN twin (same layer shapes, ReLU): every dense op is a MAC."""

    @property
    def total_macs(self) -> float:
        return sum(layer.macs for layer in self.layers)

    @property
    def total_acs(self) -> float:
        return sum(layer.acs for layer in self.layers)

    @property
    def energy_pj(self) -> float:
        return sum(layer.energy_pj for layer in self.layers)

    @property
    def energy_ratio_vs_ann(self) -> float:
        """Spiking energy / ANN energy (< 1 means the spiking net is cheaper)."""
        return self.energy_pj / self.ann_energy_pj


def energy_report(
    net: QNetwork, firing_rates: Mapping[str, float | Tensor] | None = None
) -> EnergyReport:
    """Operations and energy per inference of ``net``.

    For a spiking net ``firing_rates`` are its layers' rates as returned by
    ``net(obs, return_stats=True)`` (keys: the layer driving each LIF layer). A dense net
    needs none: every layer costs its MACs.
    """
    shapes = net.layer_shapes
    ann_energy = sum(s.macs for s in shapes) * E_MAC_PJ
    if not isinstance(net, SpikingQNetwork):
        layers = tuple(
            LayerEnergy(s.name, s.macs, float(s.macs), 0.0, s.macs * E_MAC_PJ) for s in shapes
        )
        return EnergyReport(layers, ann_energy)
    if firing_rates is None:
        raise ValueError(
            "a spiking network's energy needs its firing rates (net(obs, return_stats=True))"
        )
    missing = [s.name for s in shapes[:-1] if s.name not in firing_rates]
    if missing:
        raise ValueError(
            f"firing_rates lacks layer(s) {missing}; expected keys {[s.name for s in shapes[:-1]]}"
        )
    rows = [
        LayerEnergy(
            shapes[0].name, shapes[0].macs, float(shapes[0].macs), 0.0, shapes[0].macs * E_MAC_PJ
        )
    ]
    for previous, shape in itertools.pairwise(shapes):
        acs = float(firing_rates[previous.name]) * net.T * shape.macs
        rows.append(LayerEnergy(shape.name, shape.macs, 0.0, acs, acs * E_AC_PJ))
    return EnergyReport(tuple(rows), ann_energy)
