"""Is the spiking network alive? A guard against LIF layers that never fire (or always do).

A fresh DSQN does not fire on Atari frames: it wakes up only through the surrogate gradient,
and a default that damps small gradients (Adam ε = 1.5e-4 did) leaves it silent for good,
with Q the same for every observation. Nothing crashes; the run just learns nothing. The
guard watches each LIF layer's firing rate after learning starts::

    guard = SilentLayerGuard(patience_updates=5_000)
    for each training iteration:
        for line in guard.observe(updates, firing_rates):   # what changed, one line each
            print(line)
        guard.dead_layers        # {"conv3": LayerState.SILENT, ...}: for metrics and registry
        guard.warning            # one line while some layer is dead, else None

A layer is *silent* while its rate is exactly 0 (no spike in any neuron, any step, any
observation measured) and *saturated* while it is exactly 1 (every neuron fires every step: it
carries no information either). It is flagged once it has stayed so for ``patience_updates``
learner updates; a flagged layer that fires again is unflagged with a line of its own.
Pure Python: the trainer feeds it the rates the env runners measured on the observations they
acted on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum


class LayerState(str, Enum):
    """What a LIF layer's firing rate says of it."""

    FIRING = "firing"
    SILENT = "silent"
    """Rate exactly 0: the layer passes nothing on."""
    SATURATED = "saturated"
    """Rate exactly 1: every neuron fires at every step, whatever the input."""


def layer_state(rate: float) -> LayerState:
    if rate <= 0.0:
        return LayerState.SILENT
    if rate >= 1.0:
        return LayerState.SATURATED
    return LayerState.FIRING


@dataclass
class SilentLayerGuard:
    """Flags LIF layers whose rate stayed exactly 0 (or 1) for ``patience_updates`` updates."""

    patience_updates: int = 5_000
    """Learner updates a layer may stay silent or saturated before it is flagged (0: never)."""

    # Per layer: (state, learner updates when the current dead streak began).
    _streaks: dict[str, tuple[LayerState, int]] = field(default_factory=dict)
    _flagged: dict[str, LayerState] = field(default_factory=dict)
    _last_updates: int | None = None

    def observe(self, updates: int, rates: Mapping[str, float]) -> list[str]:
        """Take one iteration's rates (measured since the last call) at ``updates`` learner
        updates; return the lines to show: one per layer that fires again, and the warning
        when a layer was flagged."""
        if self.patience_updates <= 0 or updates <= 0 or not rates:
            return []  # before learning starts the network has not had a chance to wake
        streak_start = 0 if self._last_updates is None else self._last_updates
        self._last_updates = updates
        lines = []
        newly_flagged = False
        for layer, rate in rates.items():
            state = layer_state(float(rate))
            if state is LayerState.FIRING:
                self._streaks.pop(layer, None)
                if self._flagged.pop(layer, None) is not None:
                    lines.append(
                        f"LIF layer {layer} fires again (rate {rate:.4f}) at {updates:,} updates"
                    )
                continue
            previous = self._streaks.get(layer)
            if previous is None or previous[0] is not state:
                self._streaks[layer] = (state, streak_start)
            began = self._streaks[layer][1]
            if layer not in self._flagged and updates - began >= self.patience_updates:
                self._flagged[layer] = state
                newly_flagged = True
        if newly_flagged:
            lines.append(self.warning or "")
        return lines

    @property
    def dead_layers(self) -> dict[str, LayerState]:
        """The flagged layers, in the order they were flagged."""
        return dict(self._flagged)

    @property
    def warning(self) -> str | None:
        """One line naming every flagged layer and what to do, or None when all fire."""
        if not self._flagged:
            return None
        silent = [name for name, s in self._flagged.items() if s is LayerState.SILENT]
        saturated = [name for name, s in self._flagged.items() if s is LayerState.SATURATED]
        parts = []
        if silent:
            parts.append(f"{', '.join(silent)} fired no spike")
        if saturated:
            parts.append(f"{', '.join(saturated)} fired at every step")
        return (
            f"spiking network not learning: LIF layer(s) {'; '.join(parts)} for "
            f">= {self.patience_updates:,} updates (Q cannot depend on the observation through "
            "them); check adam_eps, lr and the input scale (README: 'A DSQN that fires')"
        )
