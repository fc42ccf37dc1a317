"""The silent-network guard: its logic exactly, then a real run whose spiking net cannot fire
says so on the console, in its metrics file, in Prometheus and in the run registry."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from dsqn_rllib.config import TrainConfig
from dsqn_rllib.errors import ConfigError
from dsqn_rllib.ops.metrics import LABELS, PrometheusExporter
from dsqn_rllib.ops.registry import LocalRunRegistry, RegistryConfig
from dsqn_rllib.snn.spike_health import LayerState, SilentLayerGuard, layer_state

FIRING = {"conv1": 0.2, "fc": 0.1}


def test_layer_states() -> None:
    assert layer_state(0.0) is LayerState.SILENT
    assert layer_state(1.0) is LayerState.SATURATED
    assert layer_state(1e-9) is layer_state(0.999) is LayerState.FIRING


def test_a_layer_is_flagged_once_it_stays_silent_for_the_patience() -> None:
    guard = SilentLayerGuard(patience_updates=100)
    assert guard.observe(40, {"conv1": 0.2, "fc": 0.0}) == []
    assert guard.observe(99, {"conv1": 0.2, "fc": 0.0}) == []  # silent for 99 updates so far
    (line,) = guard.observe(100, {"conv1": 0.2, "fc": 0.0})
    assert "fc fired no spike" in line and ">= 100 updates" in line and "conv1" not in line
    assert guard.dead_layers == {"fc": LayerState.SILENT} and guard.warning == line
    assert guard.observe(150, {"conv1": 0.2, "fc": 0.0}) == []  # said once, not per iteration
    (back,) = guard.observe(160, {"conv1": 0.2, "fc": 0.003})
    assert back == "LIF layer fc fires again (rate 0.0030) at 160 updates"
    assert guard.dead_layers == {} and guard.warning is None


def test_a_spike_restarts_the_count_and_saturation_is_flagged_too() -> None:
    guard = SilentLayerGuard(patience_updates=100)
    guard.observe(60, {"conv1": 0.0, "fc": 1.0})
    guard.observe(90, {"conv1": 0.01, "fc": 1.0})  # conv1 fired: its streak starts again
    (line,) = guard.observe(130, {"conv1": 0.0, "fc": 1.0})
    assert guard.dead_layers == {"fc": LayerState.SATURATED}
    assert "fc fired at every step" in line
    guard.observe(190, {"conv1": 0.0, "fc": 1.0})  # conv1 silent since 90 (its last spike)
    assert guard.dead_layers == {"fc": LayerState.SATURATED, "conv1": LayerState.SILENT}
    assert "conv1 fired no spike; fc fired at every step" in (guard.warning or "")


def test_nothing_is_watched_before_learning_starts_or_when_disabled() -> None:
    guard = SilentLayerGuard(patience_updates=10)
    for _ in range(5):
        assert guard.observe(0, {"conv1": 0.0}) == []  # no update yet: nothing to wake it
    assert guard.observe(10, {"conv1": 0.0})  # the count starts at learning start
    off = SilentLayerGuard(patience_updates=0)
    assert off.observe(10**9, {"conv1": 0.0}) == [] and off.warning is None
    assert SilentLayerGuard(patience_updates=10).observe(10**6, {}) == []  # the DQN twin


def test_patience_is_validated_in_one_line() -> None:
    with pytest.raises(ConfigError, match="silent_layer_patience must be an integer >= 0"):
        TrainConfig(env="CartPole-v1", silent_layer_patience=-1).validate()


def test_the_exporter_serves_the_number_of_flagged_layers() -> None:
    # Every label of the run on the series, in Prometheus's (sorted) order.
    series = 'game="t",model="t",readout="t",run_id="t",seed="t",sweep="t"'
    exporter = PrometheusExporter(dict.fromkeys(LABELS, "t"), port=0)
    try:
        url = f"http://127.0.0.1:{exporter.port}/metrics"
        exporter.record({"firing_rates": FIRING, "silent_layers": []}, frame_skip=1)
        assert f"dsqn_silent_layers{{{series}}} 0.0" in (
            urllib.request.urlopen(url).read().decode()
        )
        exporter.record({"firing_rates": FIRING, "silent_layers": ["conv3", "fc"]}, frame_skip=1)
        assert f"dsqn_silent_layers{{{series}}} 2.0" in (
            urllib.request.urlopen(url).read().decode()
        )
    finally:
        exporter.close()


@pytest.mark.slow
def test_a_run_whose_net_cannot_fire_warns_everywhere(tmp_path: Path) -> None:
    """A spiking MLP whose threshold no current reaches, through the whole pipeline."""
    import json

    from dsqn_rllib.run import Trainer

    cfg = TrainConfig(
        env="CartPole-v1", num_env_runners=0, envs_per_runner=2, hidden_sizes=(16, 16),
        learning_starts=64, train_batch_size=16, train_every=2, buffer_size=2000,
        total_steps=600, eval_interval=0, silent_layer_patience=20,
        run_dir=str(tmp_path), run_id="silent",
    ).with_spiking(T=2, v_threshold=1e6)  # fmt: skip
    registry = LocalRunRegistry(RegistryConfig(local_path=tmp_path / "registry.sqlite3"))
    lines: list[str] = []
    Trainer(cfg, registry=registry, out=lines.append).run()
    warnings = [line for line in lines if "not learning" in line]
    assert len(warnings) == 1, lines  # one line, when the layers were flagged
    assert warnings[0].startswith("[silent] warning: spiking network not learning: ")
    assert "fc1, fc2 fired no spike" in warnings[0]
    metrics = (tmp_path / "silent" / "metrics.jsonl").read_text()
    reports = [json.loads(line) for line in metrics.splitlines()]
    assert reports[-1]["silent_layers"] == ["fc1", "fc2"]
    assert all(r["silent_layers"] == [] for r in reports if r["updates"] < 20)
    run = registry.get_run("silent")
    assert run is not None and run.warning is not None and "fc1, fc2" in run.warning
