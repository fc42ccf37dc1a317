"""Threshold-aware initialisation: an option beyond the paper against vanishing spikes.

With PyTorch's default init a DSQN's first conv drives its LIF layer below V_th on Atari
frames, and every deeper layer sees too few spikes to reach V_th either, so a fresh network is
silent and must wake through the surrogate gradient (the PL-SDQN line of work calls the deep
layers' share of this *spike feature information vanishing*). ``threshold_aware_init_`` scales
each spiking layer's weights and bias, in network order, by the smallest gain >= 1 that makes
its LIF layer fire at ``target_rate`` on a probe of real observations (layer-sequential
calibration in the manner of LSUV init, Mishkin & Matas 2016, with the firing rate as the
statistic)::

    gains = threshold_aware_init_(net, probe_frames, target_rate=0.05)

A layer already firing at ``target_rate`` keeps its init (gain 1). The head (the LI readout's
input) is left as initialised. Off by default: the paper and the authors' code use PyTorch's
default init; ``dsqn train --spike-init threshold-aware`` calibrates the learner's network on
``PROBE_FRAMES`` frames of random play before the first weights reach the env runners.
"""

from __future__ import annotations

from enum import Enum

import torch
from torch import Tensor

from dsqn_rllib.snn.networks import SpikingQNetwork


class SpikeInit(str, Enum):
    """How a spiking network's weights start."""

    DEFAULT = "default"
    """PyTorch's default init, as the paper and the authors' code."""
    THRESHOLD_AWARE = "threshold-aware"
    """``threshold_aware_init_`` on a probe of random-play frames of the game."""


DEFAULT_TARGET_RATE = 0.05
PROBE_FRAMES = 256

MAX_GAIN = 1024.0
"""Give up growing a layer past this gain (its input carries nothing to amplify)."""


@torch.no_grad()
def threshold_aware_init_(
    net: SpikingQNetwork,
    probe_obs: Tensor,
    target_rate: float = DEFAULT_TARGET_RATE,
    steps: int = 12,
) -> dict[str, float]:
    """Scale each spiking layer in place so its LIF layer fires at about ``target_rate`` on
    ``probe_obs``; return the gain given to each layer (bisection in log-gain, ``steps``
    halvings after bracketing)."""
    if not 0.0 < target_rate < 1.0:
        raise ValueError(f"target_rate must be in (0, 1), got {target_rate!r}")
    gains: dict[str, float] = {}
    for name in list(net.spiking_neurons):
        layer = net.layers[name]
        weight = layer.weight.detach().clone()
        bias = None if layer.bias is None else layer.bias.detach().clone()

        def rate_at(gain: float) -> float:
            _scale_layer(layer, weight, bias, gain)  # noqa: B023 (called in this iteration only)
            _, stats = net(probe_obs, return_stats=True)
            return float(stats.rates[name])  # noqa: B023

        if rate_at(1.0) >= target_rate:
            gains[name] = 1.0
            continue
        low, high = 1.0, 2.0
        while rate_at(high) < target_rate and high < MAX_GAIN:
            low, high = high, high * 2
        for _ in range(steps):
            middle = (low * high) ** 0.5
            if rate_at(middle) < target_rate:
                low = middle
            else:
                high = middle
        rate_at(high)  # leave the layer at the smallest gain found to reach the target
        gains[name] = high
    return gains


def _scale_layer(layer: torch.nn.Module, weight: Tensor, bias: Tensor | None, gain: float) -> None:
    layer.weight.copy_(weight * gain)
    if bias is not None:
        layer.bias.copy_(bias * gain)
