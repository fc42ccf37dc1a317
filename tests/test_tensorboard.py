"""The TensorBoard sink: what it writes is read back from the event files, tag by tag and step
by step; TensorBoard's own reader agrees where it is installed."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from dsqn_rllib.ops.tensorboard import (
    EVAL_MAX_TAG,
    EVAL_MEAN_TAG,
    FIRING_RATE_PREFIX,
    REPORT_SCALARS,
    TensorBoardSink,
    event_files,
    read_scalars,
)


def report(steps: int, **extra: object) -> dict:
    """A ``result["dsqn"]`` report as PipelinedDQN writes it, plus RunObserver's energy."""
    return {
        "env_steps": steps,
        "updates": steps // 4,
        "episode_return_mean": -20.0 + steps / 1000,
        "td_loss": 0.5 / (1 + steps),
        "q_mean": 0.125 * steps / 1000,
        "q_max": 0.25 * steps / 1000,
        "epsilon": 1.0 - steps / 10_000,
        "firing_rates": {"conv1": 0.05, "conv2": 0.1 + steps / 100_000, "fc": 0.0},
        "env_steps_per_s": 412.5,
        "updates_per_s": 103.25,
        "energy_pj_per_inference": 1.5e7 + steps,
        "time": 1_700_000_000.0 + steps,
        "new_episode_returns": [-21.0, -20.0],  # a list: not a scalar
        "run_id": "r",  # text: not a scalar
        **extra,
    }


def test_every_scalar_is_read_back_at_its_env_step(tmp_path: Path) -> None:
    reports = [report(s) for s in (1000, 2000, 3000)]
    with TensorBoardSink(tmp_path) as sink:
        for r in reports:
            sink.write(r)
        sink.write_evaluation(2000, -19.5, -17.0)
        sink.write_evaluation(3000, -18.25, -15.0)
    scalars = read_scalars(tmp_path)
    steps = [1000, 2000, 3000]
    for key in ("episode_return_mean", "td_loss", "q_mean", "q_max", "epsilon",
                "env_steps_per_s", "updates_per_s", "energy_pj_per_inference"):  # fmt: skip
        got = scalars[REPORT_SCALARS[key]]
        assert [s for s, _ in got] == steps, key
        assert [v for _, v in got] == pytest.approx([r[key] for r in reports], rel=1e-6), key
    for layer in ("conv1", "conv2", "fc"):
        got = scalars[FIRING_RATE_PREFIX + layer]
        assert [s for s, _ in got] == steps
        assert [v for _, v in got] == pytest.approx(
            [r["firing_rates"][layer] for r in reports], rel=1e-6
        )
    assert scalars[EVAL_MEAN_TAG] == [(2000, -19.5), (3000, -18.25)]
    assert scalars[EVAL_MAX_TAG] == [(2000, -17.0), (3000, -15.0)]
    # Nothing but the documented scalars (no lists, no text, no counters).
    documented = set(REPORT_SCALARS.values()) | {EVAL_MEAN_TAG, EVAL_MAX_TAG}
    assert set(scalars) - documented == {FIRING_RATE_PREFIX + x for x in ("conv1", "conv2", "fc")}
    assert REPORT_SCALARS["dqn_twin_energy_pj_per_inference"] not in scalars  # not in the report


def test_missing_none_and_nan_values_are_left_out(tmp_path: Path) -> None:
    """A silent DSQN has no energy (None); no loss before the first update (NaN)."""
    with TensorBoardSink(tmp_path) as sink:
        sink.write(report(100, td_loss=math.nan, energy_pj_per_inference=None, q_mean=math.inf))
        sink.write(report(200, firing_rates={}))
        sink.write_evaluation(200, math.nan, 3.0)
    scalars = read_scalars(tmp_path)
    assert [s for s, _ in scalars["losses/td_loss"]] == [200]
    assert [s for s, _ in scalars["energy/pj_per_inference"]] == [200]
    assert [s for s, _ in scalars["losses/q_mean"]] == [200]
    assert [s for s, _ in scalars[FIRING_RATE_PREFIX + "conv1"]] == [100]
    assert EVAL_MEAN_TAG not in scalars and scalars[EVAL_MAX_TAG] == [(200, 3.0)]


def test_the_events_are_on_disk_while_the_run_goes_on(tmp_path: Path) -> None:
    """A user runs ``tensorboard --logdir`` on a live run: each write is flushed."""
    sink = TensorBoardSink(tmp_path)
    sink.write(report(1000))
    assert read_scalars(tmp_path)["charts/epsilon"] == [(1000, pytest.approx(0.9))]
    sink.close()
    assert len(event_files(tmp_path)) == 1


def test_a_resumed_run_adds_a_file_and_keeps_the_first(tmp_path: Path) -> None:
    """Two writers within one second: tensorboardX's own file name would be the same and the
    second would truncate the first."""
    with TensorBoardSink(tmp_path) as sink:
        sink.write(report(1000))
    with TensorBoardSink(tmp_path, purge_step=1000) as sink:
        sink.write(report(1000, epsilon=0.5))
    assert len(event_files(tmp_path)) == 2
    assert read_scalars(tmp_path)["charts/epsilon"] == [
        (1000, pytest.approx(0.9)), (1000, 0.5),
    ]  # fmt: skip


def test_tensorboard_reads_the_files_as_users_expect(tmp_path: Path) -> None:
    """TensorBoard's own loader, where installed (it is a user's tool, not a dependency),
    and a resumed run's purge_step that drops the steps it does again."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    run = tmp_path / "runs" / "dsqn-pong"
    with TensorBoardSink(run) as sink:
        for s in (1000, 2000, 3000):
            sink.write(report(s))
    with TensorBoardSink(run, purge_step=2000) as sink:  # resumed from the 2000-step checkpoint
        sink.write(report(2000, epsilon=0.5))
    multiplexer = EventMultiplexer().AddRunsFromDirectory(str(tmp_path / "runs"))
    multiplexer.Reload()
    assert list(multiplexer.Runs()) == ["dsqn-pong"]
    epsilon = multiplexer.Scalars("dsqn-pong", "charts/epsilon")
    assert [(e.step, round(e.value, 6)) for e in epsilon] == [(1000, 0.9), (2000, 0.5)]
    rates = multiplexer.Scalars("dsqn-pong", FIRING_RATE_PREFIX + "conv2")
    assert [e.step for e in rates] == [1000, 2000]


def test_the_sink_pulls_in_no_ray() -> None:
    code = "import sys, dsqn_rllib.ops.tensorboard; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_write_is_in_the_file_when_it_returns(tmp_path: Path) -> None:
    """No writer thread between the sink and the file: 50 iterations written back to back
    are each readable at once (tensorboardX's queue lost the newest one in a CI run)."""
    with TensorBoardSink(tmp_path) as sink:
        for i in range(1, 51):
            sink.write(report(i * 100))
            assert [s for s, _ in read_scalars(tmp_path)["charts/epsilon"]][-1] == i * 100
    sink.close()  # closing twice is harmless
