"""The ``dsqn train`` driver (``dsqn_rllib.run.Trainer``) over the algorithm: the run stops at
its goal (not an iteration later), the progress line carries an ETA, the guard, energy and
TensorBoard come from the algorithm's own ``RunObserver`` (the one Tune trials have), and a
final record the registry could not take waits for the next command."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dsqn_rllib.config import TrainConfig
from dsqn_rllib.ops.tensorboard import read_scalars


def _cartpole(tmp_path: Path, **options: object) -> TrainConfig:
    base: dict = dict(
        env="CartPole-v1", model="dsqn", seed=0, num_env_runners=0, envs_per_runner=4,
        hidden_sizes=(32,), train_batch_size=32, train_every=4, buffer_size=10_000,
        learning_starts=500, epsilon_decay_steps=2000, eval_interval=0, checkpoint_interval=0,
        total_steps=1_501, run_dir=str(tmp_path), run_id="goal",
    )  # fmt: skip
    base.update(options)
    return TrainConfig(**base).with_spiking(T=2)


@pytest.mark.parametrize("num_env_runners", [0, 1])
def test_a_run_stops_at_its_total_steps_not_an_iteration_later(
    tmp_path: Path, num_env_runners: int
) -> None:
    """An iteration lasts 2 s: a CartPole runner samples thousands of steps in it. The
    algorithm's env_steps_limit cuts the last chunks, so the run ends within one lockstep of
    its envs past the goal (1,501 steps, 4 envs: at most 1,504)."""
    from dsqn_rllib.run import Trainer

    lines: list[str] = []
    cfg = _cartpole(tmp_path, num_env_runners=num_env_runners)
    summary = Trainer(cfg, out=lines.append).run()
    assert cfg.total_steps <= summary.env_steps < cfg.total_steps + cfg.envs_per_runner, lines
    reports = [
        json.loads(x) for x in (tmp_path / "goal" / "metrics.jsonl").read_text().split("\n")[:-1]
    ]
    progress = [line for line in lines if " | " in line and "step " in line]
    assert progress, lines
    # No ETA is promised from the warm-up's sampling-only rate; then one, in the line and the
    # report alike.
    for report, line in zip(reports, progress, strict=True):
        if report["env_steps"] < cfg.learning_starts:
            assert "ETA once learning starts (500 steps)" in line and report["eta_s"] is None
        elif report["eta_s"] is not None:
            assert report["eta_s"] >= 0 and "ETA " in line


def test_the_driver_runs_the_algorithms_observer_for_guard_and_energy(tmp_path: Path) -> None:
    """The same RunObserver as under Tune fills the report: silent layers and energy per
    inference come from it (the driver computes neither)."""
    from dsqn_rllib.rllib.callbacks import RunObserver
    from dsqn_rllib.run import Trainer

    trainer = Trainer(
        _cartpole(tmp_path, total_steps=800, eval_interval=600, eval_episodes=2),
        out=lambda line: None,
    )
    summary = trainer.run()
    assert isinstance(trainer.observer, RunObserver)
    assert trainer.observer.run_id == "goal"
    reports = [
        json.loads(x) for x in (tmp_path / "goal" / "metrics.jsonl").read_text().split("\n")[:-1]
    ]
    with_rates = [r for r in reports if r["firing_rates"]]
    assert with_rates, reports
    for report in with_rates:
        assert report["energy_pj_per_inference"] > 0
        assert report["dqn_twin_energy_pj_per_inference"] > 0
        assert isinstance(report["silent_layers"], list)
    # The same reports, and the evaluations, as TensorBoard scalars at their env steps.
    scalars = read_scalars(tmp_path / "goal")
    assert scalars["charts/epsilon"] == [
        (r["env_steps"], pytest.approx(r["epsilon"])) for r in reports
    ]
    assert [step for step, _ in scalars["spikes/firing_rate/fc1"]] == [
        r["env_steps"] for r in with_rates
    ]
    assert scalars["eval/return_mean"] == [
        (e["env_steps"], pytest.approx(e["mean"])) for e in summary.evaluations
    ]
    assert summary.evaluations and summary.evaluations[-1]["env_steps"] == summary.env_steps


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """A redis-server of this test alone (127.0.0.1, a free port): (url, process)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(tmp_path)]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    _wait_for(url)
    yield url, server
    server.kill()
    server.wait()


def _wait_for(url: str) -> None:
    import redis

    for _ in range(200):
        try:
            redis.Redis.from_url(url).ping()
            return
        except redis.ConnectionError:
            time.sleep(0.05)
    raise AssertionError(f"no redis-server answers at {url}")


def test_a_final_record_the_registry_missed_is_written_by_the_next_command(
    tmp_path: Path, own_redis: tuple[str, subprocess.Popen]
) -> None:
    """Redis goes down during the run: training goes on, the final status waits in the outbox
    next to the runs, and the first command that opens the registry once Redis is back writes
    it (status finished, the run's evaluations)."""
    from dsqn_rllib.ops.registry import RegistryConfig, RunStatus, open_registry
    from dsqn_rllib.run import Trainer

    url, server = own_redis
    lines: list[str] = []

    def progress(line: str) -> None:
        lines.append(line)
        if "evaluation at" in line and server.poll() is None:
            server.kill()  # Redis goes away mid-run (its data with it: --save "")
            server.wait()

    cfg = _cartpole(
        tmp_path, total_steps=1200, eval_interval=600, eval_episodes=2, registry_url=url
    )
    summary = Trainer(cfg, out=progress).run()
    assert server.poll() is not None, lines  # it did go down before the end
    kept = [line for line in lines if "waits in" in line]
    assert len(kept) == 1 and "registry-outbox" in kept[0], lines
    assert list((tmp_path / "registry-outbox").glob("*.json"))

    revived = subprocess.Popen(server.args, stdout=subprocess.DEVNULL)
    try:
        _wait_for(url)
        registry = open_registry(RegistryConfig.resolve(url, "dsqn", run_root=tmp_path))
        assert registry.flushed == ["goal"]
        record = registry.get_run("goal")
        assert record is not None and record.status == RunStatus.FINISHED.value
        assert record.env_steps == summary.env_steps
        recorded = registry.evaluations("goal")
        assert [e["env_steps"] for e in recorded] == [e["env_steps"] for e in summary.evaluations]
        assert list((tmp_path / "registry-outbox").glob("*.json")) == []
    finally:
        revived.kill()
        revived.wait()


def test_dsqn_train_precision_bf16_reaches_the_learner(tmp_path: Path) -> None:
    """``--precision bf16`` is a network option: the learner's network updates in bf16 (what the
    pipeline reports it built), the run trains, and the checkpoint keeps the option."""
    from dsqn_rllib.ops.checkpoints import load_network
    from dsqn_rllib.run import Trainer
    from dsqn_rllib.snn.precision import Precision

    summary = Trainer(
        _cartpole(tmp_path, total_steps=800, precision="bf16"), out=lambda line: None
    ).run()
    reports = [
        json.loads(x) for x in (tmp_path / "goal" / "metrics.jsonl").read_text().split("\n")[:-1]
    ]
    assert {r["precision"] for r in reports} == {"bf16"}
    assert summary.updates > 0
    net, cfg, _ = load_network(summary.checkpoint)
    assert cfg.precision is Precision.BF16 and net.precision is Precision.BF16


def test_the_latest_checkpoint_is_an_rllib_algorithm_checkpoint(tmp_path: Path) -> None:
    """``Algorithm.from_checkpoint(<run>/checkpoints/latest)`` (issue #14) gives the run's
    ``PipelinedDQN`` with the checkpoint's weights and counters, and it trains on from them
    (the run's --total-steps, a limit of the driver, does not stop it). The project's files
    beside RLlib's stay what ``dsqn eval`` reads; the learner state is there once."""
    import torch
    from ray.rllib.algorithms.algorithm import Algorithm

    from dsqn_rllib.ops.checkpoints import load_network
    from dsqn_rllib.run import Trainer

    summary = Trainer(_cartpole(tmp_path, total_steps=800), out=lambda line: None).run()
    latest = tmp_path / "goal" / "checkpoints" / "latest"
    assert summary.checkpoint == latest and summary.updates > 0
    net, _, progress = load_network(latest)  # the project's own files, read without Ray
    assert progress["env_steps"] == summary.env_steps >= 800
    assert not (latest / "learner").exists()  # RLlib's learner_group/ is the one copy

    algo = Algorithm.from_checkpoint(str(latest))
    try:
        assert type(algo).__name__ == "PipelinedDQN" and algo.config.env_steps_limit is None
        state = algo.get_pipeline_state()
        for key in ("env_steps", "updates", "episodes"):
            assert state[key] == progress[key], key
        saved = net.state_dict()
        learner = algo.online_network().state_dict()
        assert learner.keys() == saved.keys()
        for name, tensor in learner.items():
            torch.testing.assert_close(tensor, saved[name])
        result = algo.train()
        report = result["dsqn"]
        assert result["num_env_steps_sampled_lifetime"] == report["env_steps"]
        assert report["env_steps"] > progress["env_steps"]
        assert report["updates"] >= progress["updates"]
        # ε continues from the step count (1.0 at step 0, 0.1 at 2,000 steps).
        assert report["epsilon"] == pytest.approx(algo.config.epsilon_at(report["env_steps"]))
        assert report["epsilon"] < 1.0
    finally:
        algo.stop()
