"""``dsqn sweep``, ``dsqn compare`` and ``dsqn robustness`` as a user types them."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_dashboards import PROMETHEUS, SCRAPE_CONFIG, PrometheusServer

TINY = [
    "--learning-starts", "200", "--buffer-size", "5000", "--train-batch-size", "32",
]  # fmt: skip


def dsqn(
    *args: str, timeout: int = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "dsqn_rllib.cli", *args],
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )  # fmt: skip
    return proc


def sweep_scrape_config(targets: Path) -> str:
    """The shipped Prometheus config, every second, its sweep job reading ``targets``."""
    import yaml

    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = "1s"
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "dsqn-sweep"]
    job["file_sd_configs"] = [{"files": [f"{targets}/*.json"], "refresh_interval": "1s"}]
    return yaml.safe_dump(config, sort_keys=False)


def test_a_preset_prints_its_plan_and_cost_without_starting_anything(tmp_path: Path) -> None:
    proc = dsqn("sweep", "--preset", "readout-ablation", "--dry-run", "--run-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "sweep readout-ablation: 12 trials" in proc.stdout
    assert "dsqn last-mem T=8, dsqn max-mem T=8, dsqn mean-mem T=8, dsqn firing-rate T=8" in (
        proc.stdout
    )
    assert not (tmp_path / "readout-ablation").exists()  # no Tune experiment was started
    bad = dsqn("sweep", "--game", "pong", "--readout", "top-mem", "--dry-run")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "readout" in bad.stderr


@pytest.mark.slow
def test_a_2x2_sweep_then_compare_prints_the_records_numbers(tmp_path: Path) -> None:
    from dsqn_rllib.evaluation.compare import curves_from_registry
    from dsqn_rllib.ops.registry import RegistryConfig, open_registry
    from dsqn_rllib.ops.tensorboard import read_scalars

    # A real Prometheus with the shipped config finds the trials through their target files.
    targets = tmp_path / "targets"
    prometheus = None
    if PROMETHEUS is not None:
        config = tmp_path / "prometheus.yml"
        config.write_text(sweep_scrape_config(targets))
        prometheus = PrometheusServer(config, tmp_path / "tsdb", tmp_path / "prometheus.log")
    try:
        proc = dsqn(
            "sweep", "--env", "CartPole-v1", "--model", "dsqn,dqn", "--T", "2", "--seed", "0,1",
            "--total-steps", "800", *TINY, "--evaluation-interval", "1", "--eval-episodes", "3",
            "--name", "cp", "--run-dir", str(tmp_path / "runs"), "--metrics",
            env={"DSQN_PROMETHEUS_TARGETS_DIR": str(targets)},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        assert "4 of 4 trials done" in proc.stdout
        assert targets.is_dir() and not list(targets.iterdir())  # each trial took its file back
        if prometheus is not None:
            scraped = prometheus.api("series", **{"match[]": 'dsqn_env_steps_total{sweep="cp"}'})
            labels = {(s["job"], s["run_id"], s["model"], s["seed"], s["game"]) for s in scraped}
            assert len({run_id for _, run_id, *_ in labels}) == 4, labels
            assert {(m, seed) for _, _, m, seed, _ in labels} == {
                ("dsqn", "0"), ("dsqn", "1"), ("dqn", "0"), ("dqn", "1")
            }  # fmt: skip
            assert {(job, game) for job, _, _, _, game in labels} == {("dsqn-sweep", "CartPole-v1")}
    finally:
        if prometheus is not None:
            prometheus.stop()
    tmp_path = tmp_path / "runs"
    png = tmp_path / "curves.png"
    table = dsqn(
        "compare", "--sweep", "cp", "--run-dir", str(tmp_path), "--format", "csv",
        "--curves", str(png), "--band", "minmax",
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {png}" in table.stderr
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO(table.stdout))}
    registry = open_registry(RegistryConfig.resolve(None, "dsqn", run_root=tmp_path))
    best: dict[str, list[float]] = {}
    for run in registry.list_runs():
        means = [e["mean"] for e in registry.evaluations(run.run_id)]
        best.setdefault(run.config["network"]["model"], []).append(max(means))
    for model in ("dsqn", "dqn"):
        assert int(rows[model]["n"]) == 2
        assert float(rows[model]["mean"]) == pytest.approx(sum(best[model]) / 2, abs=0.005)
    assert float(rows["dsqn"]["vs DQN"]) == pytest.approx(
        float(rows["dsqn"]["mean"]) - float(rows["dqn"]["mean"]), abs=0.011
    )
    # The curves are the records: each run's evaluations, exactly.
    curves = {c.run_id: c for c in curves_from_registry(registry, sweep="cp")}
    assert len(curves) == 4
    for run in registry.list_runs():
        records = sorted((e["env_steps"], e["mean"]) for e in registry.evaluations(run.run_id))
        assert list(zip(curves[run.run_id].steps, curves[run.run_id].means, strict=True)) == records
    # Tune writes each trial's TensorBoard events itself (TBXLoggerCallback: tensorboardX
    # comes with ray[rllib]): result["dsqn"] flattened under ray/tune/dsqn/, at step
    # training_iteration (our results carry no timesteps_total).
    trials = sorted(p.parent for p in (tmp_path / "cp").glob("*/events.out.tfevents.*"))
    assert len(trials) == 4
    scalars = read_scalars(trials[0])
    results = [json.loads(line) for line in (trials[0] / "result.json").read_text().splitlines()]
    assert [s for s, _ in scalars["ray/tune/dsqn/env_steps"]] == [
        r["training_iteration"] for r in results
    ]
    assert [v for _, v in scalars["ray/tune/dsqn/env_steps"]] == [
        r["dsqn"]["env_steps"] for r in results
    ]
    assert {"ray/tune/dsqn/td_loss", "ray/tune/dsqn/epsilon"} <= set(scalars)
    # A trial's folder is a run for `dsqn robustness` too (its newest RLlib checkpoint).
    by_model = {
        r.config["network"]["model"]: r.run_id.split("-", 1)[1] for r in registry.list_runs()
    }
    folders = {m: next((tmp_path / "cp").glob(f"*_{i}_*")) for m, i in by_model.items()}
    attacked = dsqn(
        "robustness", str(folders["dsqn"]), str(folders["dqn"]), "--eps", "0,0.01",
        "--episodes", "2", "--format", "csv",
    )  # fmt: skip
    assert attacked.returncode == 0, attacked.stderr[-3000:]
    # ... and for `dsqn report`: curves from Tune's results, both trials overlaid.
    report = dsqn("report", str(folders["dsqn"]), str(folders["dqn"]), "--out", str(tmp_path / "r"))
    assert report.returncode == 0, report.stderr[-3000:]
    pngs = sorted(p.name for p in (tmp_path / "r").rglob("*.png"))
    assert "overlay.png" in pngs and pngs.count("training.png") == 2, pngs
    table = attacked.stdout[attacked.stdout.index("run,env,") :]  # after the progress lines
    rows = list(csv.DictReader(io.StringIO(table)))
    assert [(r["run"].split()[0], r["eps"], r["env"]) for r in rows] == [
        ("dsqn", "0", "CartPole-v1"), ("dsqn", "0.01", "CartPole-v1"),
        ("dqn", "0", "CartPole-v1"), ("dqn", "0.01", "CartPole-v1"),
    ]  # fmt: skip


@pytest.mark.slow
def test_robustness_at_eps_0_equals_dsqn_eval_and_draws_its_plot(tmp_path: Path) -> None:
    train = dsqn(
        "train", "--env", "CartPole-v1", "--hidden-sizes", "16", "--T", "2",
        "--num-env-runners", "0", "--envs-per-runner", "2", "--total-steps", "1000", *TINY,
        "--eval-interval", "0", "--checkpoint-interval", "0", "--run-dir", str(tmp_path),
        "--run-id", "cp",
    )  # fmt: skip
    assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-3000:]
    run = str(tmp_path / "cp")
    clean = dsqn("eval", run, "--episodes", "4", "--seed", "5")
    attacked = dsqn(
        "robustness", run, "--eps", "0,0.5", "--episodes", "4", "--seed", "5",
        "--format", "csv", "--png", str(tmp_path / "r.png"),
    )  # fmt: skip
    assert attacked.returncode == 0, attacked.stderr[-3000:]
    table = attacked.stdout[attacked.stdout.index("run,env,") : attacked.stdout.index("wrote ")]
    rows = list(csv.DictReader(io.StringIO(table)))
    assert [r["eps"] for r in rows] == ["0", "0.5"]
    clean_mean = float(clean.stdout.split("mean ")[1].split()[0])
    assert float(rows[0]["mean"]) == pytest.approx(clean_mean, abs=0.005)
    assert (tmp_path / "r.png").stat().st_size > 1000


@pytest.mark.slow
def test_a_sweep_whose_driver_was_killed_resumes_from_its_checkpoints(tmp_path: Path) -> None:
    """kill -9 of the driver (and its local Ray) mid-sweep; the same command again restores the
    Tune experiment: each trial continues from its last checkpoint, not from step 0."""
    import signal
    import time

    args = [
        sys.executable, "-m", "dsqn_rllib.cli", "sweep", "--env", "CartPole-v1",
        "--model", "dsqn,dqn", "--T", "2", "--seed", "0", "--total-steps", "20000", *TINY,
        "--evaluation-interval", "1", "--eval-episodes", "2", "--name", "k",
        "--run-dir", str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)  # fmt: skip
    experiment = tmp_path / "k"
    try:
        deadline = time.time() + 300

        def reported(trial: Path) -> int:
            results = trial / "result.json"
            return len(results.read_text().splitlines()) if results.is_file() else 0

        # Both trials checkpointed twice and their results read by the driver.
        while sum(reported(c.parent) >= 2 for c in experiment.glob("*/checkpoint_000001")) < 2:
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.time() < deadline, (tmp_path / "first.log").read_text()[-3000:]
            time.sleep(0.5)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the driver and the Ray it started
        first.wait()
        log.close()
    saved = {}
    for trial in experiment.glob("*/result.json"):
        results = [json.loads(line) for line in trial.read_text().splitlines()]
        saved[trial.parent.name] = max(r["num_env_steps_sampled_lifetime"] for r in results)
    assert len(saved) == 2 and all(0 < s < 20000 for s in saved.values()), saved

    again = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert "2 of 2 trials done" in again.stdout
    from dsqn_rllib.ops.registry import RegistryConfig, open_registry

    registry = open_registry(RegistryConfig.resolve(None, "dsqn", run_root=tmp_path))
    for trial in experiment.glob("*/result.json"):
        results = [json.loads(line) for line in trial.read_text().splitlines()]
        steps = [r["num_env_steps_sampled_lifetime"] for r in results]
        iterations = [r["training_iteration"] for r in results]
        assert steps[-1] >= 20000 and max(steps) > saved[trial.parent.name]
        # Restored, not restarted: iteration 1 ran once, and where the results step back (to
        # the last checkpoint) they go on from that checkpoint's iteration and env steps.
        assert iterations.count(1) == 1, iterations
        restored_at = None
        for i in range(1, len(steps)):
            if iterations[i] <= iterations[i - 1]:
                back = iterations.index(iterations[i] - 1)  # the checkpointed iteration
                assert steps[i] > steps[back], (iterations, steps)
                restored_at = steps[back] if restored_at is None else restored_at
        if restored_at is None:  # the last result before the kill was at the checkpoint
            restored_at = saved[trial.parent.name]
        # The registry: the restored trial is attempt 1 of the same run; what the lost attempt
        # evaluated past the checkpoint is marked superseded, the rest stays its history.
        (run,) = [r for r in registry.list_runs() if f"_{r.run_id[2:]}_" in trial.parent.name]
        assert run.attempt == 1 and run.status == "finished", run
        evaluations = registry.evaluations(run.run_id)
        assert any(e["attempt"] == 1 for e in evaluations)
        for e in evaluations:
            lost = e["attempt"] == 0 and e["env_steps"] > restored_at
            assert bool(e.get("superseded")) == lost, (restored_at, evaluations)
