"""``dsqn report``: the plots of real runs, their lines equal to the records, the overlay of
several runs, and the spike raster of one real observation through the layers."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dsqn_rllib.config import TrainConfig
from dsqn_rllib.envs.atari import AtariConfig, random_play_observations
from dsqn_rllib.errors import ConfigError
from dsqn_rllib.evaluation.report import (
    draw_overlay,
    draw_training_curves,
    layer_spikes,
    read_run,
    sample_raster,
    write_reports,
    write_spike_raster,
)
from dsqn_rllib.ops.checkpoints import write_checkpoint_files
from dsqn_rllib.snn.networks import DSQN
from dsqn_rllib.snn.spike_init import threshold_aware_init_

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, min_size: tuple[int, int] = (300, 200)) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC, path
    with Image.open(path) as image:
        image.verify()  # a complete, uncorrupted file
    with Image.open(path) as image:
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1], image.size
        assert len(np.unique(np.asarray(image.convert("L")))) > 2, f"{path} is blank"


def same(values: object, expected: list[float]) -> bool:
    """Equal, NaN (a gap in the line) matching NaN."""
    got = [float(v) for v in values]  # type: ignore[attr-defined]
    return len(got) == len(expected) and all(
        (math.isnan(a) and math.isnan(b)) or a == b for a, b in zip(got, expected, strict=True)
    )


# --- the spike raster on real Pong frames ----------------------------------------------------


@pytest.fixture(scope="module")
def pong_frames() -> torch.Tensor:
    return torch.as_tensor(random_play_observations(AtariConfig("pong"), 48, seed=3))


@pytest.fixture(scope="module")
def firing_dsqn(pong_frames: torch.Tensor) -> DSQN:
    """A DSQN whose every layer fires on Pong (a fresh one is silent), T = 4."""
    torch.manual_seed(0)
    net = DSQN((4, 84, 84), 6, T=4)
    threshold_aware_init_(net, pong_frames[:32], target_rate=0.05)
    return net.eval()


def test_layer_spikes_are_each_lif_layers_spikes_over_t(
    pong_frames: torch.Tensor, firing_dsqn: DSQN
) -> None:
    frame = pong_frames[-1]
    spikes = layer_spikes(firing_dsqn, frame)
    assert list(spikes) == ["conv1", "conv2", "conv3", "fc"]
    for layer, s in spikes.items():
        assert tuple(s.shape) == (4, firing_dsqn.spiking_neurons[layer])
        assert set(s.unique().tolist()) == {0.0, 1.0}, f"{layer} does not fire on Pong"
    # The encoder's spikes, by the LIF equations written out on the current the network
    # computed (its conv's own output, whatever memory layout it ran in).
    currents: list[torch.Tensor] = []
    hook = firing_dsqn.layers["conv1"].register_forward_hook(
        lambda _m, _a, out: currents.append(out.detach())
    )
    try:
        layer_spikes(firing_dsqn, frame)
    finally:
        hook.remove()
    x = currents[0].flatten()
    v, expected = torch.zeros_like(x), []
    for _ in range(4):
        h = v + (x - v) / 2.0  # tau 2, V_reset 0
        s = (h >= 1.0).float()
        v = h * (1 - s)
        expected.append(s)
    torch.testing.assert_close(spikes["conv1"], torch.stack(expected), rtol=0, atol=0)
    # Every execution path and readout shows the same spikes (the firing-rate readout's last
    # layer is recomputed from its currents); float64 so that no threshold crossing flips
    # between two summation orders.
    base = DSQN((4, 84, 84), 6, T=4).double()
    base.load_state_dict(firing_dsqn.state_dict())
    expected_spikes = layer_spikes(base.eval(), frame)
    for options in ({"execution": "reference"}, {"readout": "firing-rate"},
                    {"execution": "reference", "readout": "firing-rate"}):  # fmt: skip
        twin = DSQN((4, 84, 84), 6, T=4, **options).double()
        twin.load_state_dict(firing_dsqn.state_dict())
        for layer, s in layer_spikes(twin.eval(), frame).items():
            torch.testing.assert_close(s, expected_spikes[layer], rtol=0, atol=0, msg=layer)


def test_the_raster_samples_neurons_and_keeps_their_spikes(
    pong_frames: torch.Tensor, firing_dsqn: DSQN
) -> None:
    spikes = layer_spikes(firing_dsqn, pong_frames[-1])
    raster = sample_raster(spikes, neurons_per_layer=50, seed=7)
    assert raster.T == 4
    for layer, s in spikes.items():
        idx = raster.neurons[layer]
        assert len(idx) == 50 and np.all(np.diff(idx) > 0)
        np.testing.assert_array_equal(raster.spikes[layer], s.numpy()[:, idx])
        assert raster.rates[layer] == pytest.approx(float(s.mean()))
    again = sample_raster(spikes, neurons_per_layer=50, seed=7)
    assert all(np.array_equal(again.neurons[k], raster.neurons[k]) for k in spikes)
    with pytest.raises(ConfigError, match="neurons per layer"):
        sample_raster(spikes, neurons_per_layer=0)


def test_the_raster_of_a_pong_checkpoint_is_a_png(tmp_path: Path, firing_dsqn: DSQN) -> None:
    """A checkpoint as the driver writes it (config, progress, weights): the frame is the
    run's own env's, from random play."""
    ckpt = tmp_path / "pong-run" / "checkpoints" / "latest"
    ckpt.mkdir(parents=True)
    cfg = TrainConfig(game="pong", run_id="pong-run").with_spiking(T=4)
    progress = {"env_steps": 1234, "obs_shape": [4, 84, 84], "num_actions": 6}
    write_checkpoint_files(ckpt, cfg, progress, firing_dsqn)
    png = write_spike_raster(tmp_path / "pong-run", tmp_path / "raster.png", neurons_per_layer=32)
    assert_png(png, (1000, 300))


# --- real runs -------------------------------------------------------------------------------


def train(run_dir: Path, run_id: str, model: str) -> Path:
    proc = subprocess.run(
        [sys.executable, "-m", "dsqn_rllib.cli", "train", "--env", "CartPole-v1",
         "--model", model, "--hidden-sizes", "16", "--T", "2", "--num-env-runners", "0",
         "--envs-per-runner", "2", "--total-steps", "6000", "--learning-starts", "200",
         "--buffer-size", "5000", "--train-batch-size", "32", "--eval-interval", "2000",
         "--eval-episodes", "3", "--checkpoint-interval", "0", "--run-dir", str(run_dir),
         "--run-id", run_id],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return run_dir / run_id


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A DSQN and a DQN run of ``dsqn train`` on CartPole, each evaluated more than once (6,000
    steps: several 2-s iterations even on an idle machine)."""
    root = tmp_path_factory.mktemp("runs")
    return train(root, "snn", "dsqn"), train(root, "ann", "dqn")


@pytest.mark.slow
def test_a_runs_report_draws_its_records(runs: tuple[Path, Path], tmp_path: Path) -> None:
    snn, _ = runs
    written = write_reports([snn], tmp_path, raster=True)
    names = ["returns.png", "firing_rates.png", "throughput.png", "training.png"]
    assert [p.name for p in written] == [*names, "spike_raster.png"]
    for path in written:
        assert_png(path)
    run = read_run(snn)
    assert len(run.metrics) >= 2 and len(run.evaluations) >= 2
    fig = draw_training_curves(run)
    ret, loss, q, eps, energy, rates = fig.axes
    steps = [m["env_steps"] for m in run.metrics]
    for ax, key in ((loss, "td_loss"), (eps, "epsilon"), (energy, "energy_pj_per_inference")):
        (line,) = ax.lines
        assert list(line.get_xdata()) == steps
        assert same(line.get_ydata(), [m[key] for m in run.metrics]), key
    assert same(ret.lines[0].get_ydata(), [m["episode_return_mean"] for m in run.metrics])
    (evaluation,) = ret.containers  # the errorbar: its data line, then caps and bars
    assert evaluation.get_label() == "evaluation (mean ± std)"
    assert list(evaluation.lines[0].get_xdata()) == [e["env_steps"] for e in run.evaluations]
    assert list(evaluation.lines[0].get_ydata()) == [e["mean"] for e in run.evaluations]
    assert same(q.lines[0].get_ydata(), [m["q_mean"] for m in run.metrics])
    assert same(q.lines[1].get_ydata(), [m["q_max"] for m in run.metrics])
    (rate,) = rates.lines
    assert same(rate.get_ydata(), [m["firing_rates"]["fc1"] for m in run.metrics])


@pytest.mark.slow
def test_energy_comes_from_the_firing_rates_when_a_record_lacks_it(
    runs: tuple[Path, Path],
) -> None:
    """The driver's older records carry rates but no energy: snn.energy of those rates."""
    from dsqn_rllib.evaluation.report import _layout_network, energy_series
    from dsqn_rllib.snn.energy import energy_report

    snn, _ = runs
    run = read_run(snn)
    for m in run.metrics:
        m.pop("energy_pj_per_inference", None)
    net = _layout_network(snn)
    assert net is not None and net.is_spiking
    expected = [energy_report(net, m["firing_rates"]).energy_pj for m in run.metrics]
    assert energy_series(run, net) == expected
    assert all(math.isnan(v) for v in energy_series(run, None))


@pytest.mark.slow
def test_several_runs_overlay_on_the_same_axes(runs: tuple[Path, Path], tmp_path: Path) -> None:
    snn, ann = runs
    written = write_reports([snn, ann], tmp_path / "out", raster=True)
    out = tmp_path / "out"
    assert (out / "overlay.png") in written and (out / "snn" / "spike_raster.png") in written
    assert not (out / "ann" / "spike_raster.png").exists()  # the DQN twin has no spikes
    assert (out / "ann" / "training.png").exists()
    for path in written:
        assert_png(path)
    records = [read_run(snn), read_run(ann)]
    train_ax, eval_ax, loss_ax, rate_ax = draw_overlay(records).axes
    for i, run in enumerate(records):
        assert train_ax.lines[i].get_label() == run.name
        assert same(train_ax.lines[i].get_ydata(), [m["episode_return_mean"] for m in run.metrics])
        assert list(eval_ax.lines[i].get_ydata()) == [e["mean"] for e in run.evaluations]
        assert same(loss_ax.lines[i].get_ydata(), [m["td_loss"] for m in run.metrics])
    (rate,) = rate_ax.lines  # the DQN twin has none
    assert same(rate.get_ydata(), [m["firing_rates"]["fc1"] for m in records[0].metrics])
    with pytest.raises(ConfigError, match="give --out"):
        write_reports([snn, ann])
    with pytest.raises(ConfigError, match="DQN twin"):
        write_reports([ann], tmp_path / "x", raster=True)


@pytest.mark.slow
def test_dsqn_report_as_a_user_types_it_still_works(
    runs: tuple[Path, Path], tmp_path: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dsqn_rllib.cli", "report", str(runs[0]), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"wrote {tmp_path / 'training.png'}" in proc.stdout


def test_a_sweep_trials_records_come_from_tunes_results_restores_included(tmp_path: Path) -> None:
    """A trial folder's result.json: each result's ``dsqn`` report and evaluation; after a
    restore (results stepping back to the checkpoint) the lost attempt's later ones go."""
    import json

    from dsqn_rllib.evaluation.report import read_run

    def result(steps: int, evaluated: float | None = None) -> dict:
        out: dict = {"dsqn": {"env_steps": steps, "td_loss": 0.1}, "training_iteration": 0}
        if evaluated is not None:
            out["evaluation"] = {"env_runners": {
                "env_steps_at_evaluation": steps, "episode_return_mean": evaluated,
                "episode_return_std": 1.0, "episode_return_max": evaluated + 1,
            }}  # fmt: skip
        return out

    lines = [result(100), result(200, 5.0), result(300), result(400, 9.0),  # lost past 200
             result(300), result(400, 7.0), result(500)]  # fmt: skip
    (tmp_path / "result.json").write_text("".join(json.dumps(r) + "\n" for r in lines))
    run = read_run(tmp_path)
    assert [m["env_steps"] for m in run.metrics] == [100, 200, 300, 400, 500]
    assert [(e["env_steps"], e["mean"]) for e in run.evaluations] == [(200, 5.0), (400, 7.0)]
