"""The run registry on the real Redis server (127.0.0.1:6379, $DSQN_TEST_REDIS_URL) and on the
local SQLite store: records, status, concurrent writers, kill -9, the password, and a training
run killed with -9 and resumed by its run id.

Every Redis test writes under its own key prefix (and ACL user) and deletes them afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
import redis

from dsqn_rllib.cli import main
from dsqn_rllib.config import TrainConfig
from dsqn_rllib.errors import ConfigError
from dsqn_rllib.ops.registry import (
    CheckpointKind,
    RegistryConfig,
    RegistryError,
    RunRecord,
    RunRegistry,
    RunStatus,
    open_registry,
    reconcile_evaluations,
    this_host,
)

REDIS_URL = os.environ.get("DSQN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test alone; its keys are deleted afterwards."""
    prefix = f"dsqn-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def acl_user(prefix: str) -> Iterator[tuple[str, str]]:
    """A Redis user with a password, allowed only the test's keys: (user, password)."""
    user, password = f"{prefix}-user", f"pw-{uuid.uuid4().hex}"
    client = redis.Redis.from_url(REDIS_URL)
    client.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=[f"{prefix}:*"], commands=["+@all"]
    )
    yield user, password
    client.acl_deluser(user)
    client.close()


def user_url(user: str) -> str:
    return REDIS_URL.replace("redis://", f"redis://{user}@", 1)


@pytest.fixture(params=["redis", "local"])
def registry(
    request: pytest.FixtureRequest, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunRegistry]:
    for name in ("DSQN_REDIS_PASSWORD", "REDISCLI_AUTH", "DSQN_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    url = REDIS_URL if request.param == "redis" else None
    reg = open_registry(RegistryConfig.resolve(url, prefix, run_root=tmp_path))
    yield reg
    reg.close()


def evaluation(steps: int, mean: float, attempt: int = 0) -> dict:
    return {"env_steps": steps, "attempt": attempt, "mean": mean, "std": 1.5, "max": mean + 2,
            "game": "CartPole-v1", "seed": 7, "num_episodes": 3}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Both back ends: the same interface, the same answers


def test_a_run_is_recorded_and_read_back(registry: RunRegistry) -> None:
    now = time.time()
    cfg = TrainConfig(env="CartPole-v1", total_steps=5000).validate()
    registry.start_run(
        RunRecord(
            run_id="r1",
            run_dir="/runs/r1",
            env="CartPole-v1",
            model="dsqn",
            config=cfg.to_dict(),
            started_at=now,
            heartbeat_at=now,
            total_steps=5000,
            host=this_host(),
            pid=os.getpid(),
        )
    )
    registry.heartbeat("r1", env_steps=1200, updates=30, episodes=50, total_steps=5000)
    registry.record_checkpoint("r1", CheckpointKind.LATEST, "/runs/r1/checkpoints/latest", 1000)
    registry.record_evaluation("r1", evaluation(1000, 20.0))
    registry.record_evaluation("r1", evaluation(500, 10.0))
    registry.record_checkpoint("r1", CheckpointKind.BEST, "/runs/r1/checkpoints/best", 1000, 20.0)
    run = registry.get_run("r1")
    assert run is not None and run.status_at(time.time(), 60) is RunStatus.RUNNING
    assert (run.env_steps, run.updates, run.episodes, run.total_steps) == (1200, 30, 50, 5000)
    assert (run.latest_checkpoint, run.latest_checkpoint_steps) == (
        "/runs/r1/checkpoints/latest",
        1000,
    )
    assert (run.best_checkpoint_steps, run.best_eval_return) == (1000, 20.0)
    assert TrainConfig.from_dict(run.config) == cfg
    assert run.heartbeat_at >= now
    # In step order whatever the order of arrival; the same (step, attempt) replaces.
    registry.record_evaluation("r1", {**evaluation(1000, 20.0), "superseded": True})
    evals = registry.evaluations("r1")
    assert [(e["env_steps"], e["mean"], e["seed"]) for e in evals] == [
        (500, 10.0, 7),
        (1000, 20.0, 7),
    ]
    assert evals[1]["superseded"] is True

    registry.finish("r1", RunStatus.FINISHED)
    registry.start_run(RunRecord(run_id="r2", started_at=now + 1, heartbeat_at=now + 1))
    registry.finish("r2", RunStatus.FAILED, error="RuntimeError: boom")
    runs = {r.run_id: r for r in registry.list_runs()}
    assert [r.run_id for r in registry.list_runs()] == ["r1", "r2"]  # oldest first
    assert runs["r1"].status_at(time.time() + 10_000, 60) is RunStatus.FINISHED  # never lost
    assert runs["r2"].status_at(time.time(), 60) is RunStatus.FAILED
    assert runs["r2"].error == "RuntimeError: boom" and runs["r2"].finished_at is not None
    assert registry.get_run("nope") is None and registry.evaluations("nope") == []
    registry.delete_run("r2")
    assert [r.run_id for r in registry.list_runs()] == ["r1"]


def test_a_silent_running_run_shows_as_lost(registry: RunRegistry) -> None:
    now = time.time()
    elsewhere = RunRecord(run_id="a", started_at=now, heartbeat_at=now, host="other-host", pid=1)
    registry.start_run(elsewhere)
    run = registry.get_run("a")
    assert run is not None
    assert run.status_at(now + 2, stale_after_s=3) is RunStatus.RUNNING
    assert run.status_at(now + 4, stale_after_s=3) is RunStatus.LOST
    # On this host a dead writer is lost at once; a live one is running.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    here = RunRecord(run_id="b", heartbeat_at=now, host=this_host(), pid=dead.pid)
    assert here.status_at(now, 3) is RunStatus.LOST
    here.pid = os.getpid()
    assert here.status_at(now, 3) is RunStatus.RUNNING


def test_evaluations_past_the_checkpoint_are_superseded_never_dropped() -> None:
    first = [evaluation(1000, 1.0), evaluation(2000, 2.0), evaluation(3000, 3.0)]
    # Attempt 0 checkpointed at 2000 and was killed after evaluating at 3000.
    every, history = reconcile_evaluations(first, checkpoint_steps=2000, attempt=1)
    assert [(e["env_steps"], e.get("superseded", False)) for e in every] == [
        (1000, False),
        (2000, False),
        (3000, True),
    ]
    assert [e["mean"] for e in every] == [1.0, 2.0, 3.0]  # values untouched
    assert [e["env_steps"] for e in history] == [1000, 2000]
    # Attempt 1 evaluates at 2500 and 3000 (a different record from attempt 0's 3000),
    # checkpoints at 3000 and dies; attempt 2 keeps attempt 0's 3000 superseded.
    second = [*every, evaluation(2500, 2.5, attempt=1), evaluation(3000, 3.5, attempt=1)]
    every, history = reconcile_evaluations(second, checkpoint_steps=3000, attempt=2)
    assert len(every) == 5
    assert [(e["env_steps"], e["attempt"]) for e in history] == [
        (1000, 0),
        (2000, 0),
        (2500, 1),
        (3000, 1),
    ]
    # An evaluation of weights from before the checkpoint that finished after it stays.
    late = [evaluation(1000, 1.0), evaluation(1800, 1.8)]
    _, history = reconcile_evaluations(late, checkpoint_steps=2000, attempt=1)
    assert [e["env_steps"] for e in history] == [1000, 1800]


# --------------------------------------------------------------------------------------------
# The local store: several writers at once, and kill -9 in the middle of writing

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from dsqn_rllib.ops.registry import RegistryConfig, RunRecord, open_registry
    root, run_id, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    reg = open_registry(RegistryConfig(url=None, local_path=root / "registry.sqlite3"))
    reg.start_run(RunRecord(run_id=run_id, started_at=time.time(), heartbeat_at=time.time()))
    i = 0
    while count < 0 or i < count:
        reg.heartbeat(run_id, env_steps=i, updates=i, episodes=i, total_steps=count)
        reg.record_evaluation(run_id, {"env_steps": i, "mean": float(i), "pad": "x" * 2000})
        i += 1
        if i == 20:
            print("20 written", flush=True)
    """
)


def test_the_local_store_takes_concurrent_writers_and_survives_kill_9(tmp_path: Path) -> None:
    def writer(run_id: str, count: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), run_id, str(count)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    victim = writer("victim", -1)  # writes until killed
    writers = [writer(f"w{i}", 60) for i in range(3)]
    assert victim.stdout is not None and victim.stdout.readline().strip() == "20 written"
    os.kill(victim.pid, signal.SIGKILL)  # mid-write, while the others write too
    victim.wait()
    for w in writers:
        assert w.wait(timeout=120) == 0
    reg = open_registry(RegistryConfig(url=None, local_path=tmp_path / "registry.sqlite3"))
    for i in range(3):
        run = reg.get_run(f"w{i}")
        assert run is not None and run.env_steps == 59
        assert [e["env_steps"] for e in reg.evaluations(f"w{i}")] == list(range(60))
    # The killed writer's records: every whole write, nothing torn, the store intact.
    steps = [e["env_steps"] for e in reg.evaluations("victim")]
    assert len(steps) >= 20 and steps == list(range(len(steps)))
    run = reg.get_run("victim")
    assert run is not None and run.env_steps in (len(steps) - 1, len(steps))
    db = reg._db  # type: ignore[attr-defined]
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# --------------------------------------------------------------------------------------------
# Redis: the password comes from the environment, and never shows


def test_the_redis_password_comes_from_the_environment_and_never_shows(
    prefix: str, acl_user: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    user, password = acl_user
    config = RegistryConfig.resolve(user_url(user), prefix)
    for name in ("DSQN_REDIS_PASSWORD", "REDISCLI_AUTH"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RegistryError) as err:
        open_registry(config)
    assert str(err.value).startswith(f"cannot reach the run registry at {user_url(user)}: ")
    monkeypatch.setenv("DSQN_REDIS_PASSWORD", "wrong-" + password)
    with pytest.raises(RegistryError) as err:
        open_registry(config)
    assert password not in str(err.value) and "\n" not in str(err.value)
    for name in ("DSQN_REDIS_PASSWORD", "REDISCLI_AUTH"):  # ours, or redis-cli's variable
        monkeypatch.delenv("DSQN_REDIS_PASSWORD", raising=False)
        monkeypatch.setenv(name, password)
        reg = open_registry(config)
        reg.start_run(RunRecord(run_id=name, started_at=time.time(), heartbeat_at=time.time()))
        assert reg.get_run(name) is not None
        reg.close()
    with pytest.raises(ConfigError, match="must not contain a password"):
        RegistryConfig.resolve(user_url(f"{user}:{password}"), prefix)


def test_a_run_that_raised_is_recorded_as_failed(registry: RunRegistry, tmp_path: Path) -> None:
    from dsqn_rllib.run import Trainer

    def out(line: str) -> None:
        if "run registry:" in line:  # the run is recorded as running: fail right after
            raise RuntimeError("disk full\nsecond line")

    cfg = TrainConfig(env="CartPole-v1", run_dir=str(tmp_path), run_id="doomed")
    with pytest.raises(RuntimeError, match="disk full"):
        Trainer(cfg, registry=registry, out=out).run()
    run = registry.get_run("doomed")
    assert run is not None and run.status_at(time.time(), 60) is RunStatus.FAILED
    assert run.error == "RuntimeError: disk full"
    assert run.run_dir == str((tmp_path / "doomed").resolve())
    assert not ray.is_initialized()


def test_resume_by_run_id_or_path_finds_the_run_in_the_local_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dsqn_rllib.ops.checkpoints import write_checkpoint_files
    from dsqn_rllib.snn.networks import build_q_network

    monkeypatch.delenv("DSQN_REDIS_URL", raising=False)
    cfg = TrainConfig(env="CartPole-v1", run_dir=str(tmp_path), run_id="laptop").validate()
    ckpt = tmp_path / "laptop" / "checkpoints" / "latest"
    ckpt.mkdir(parents=True)
    net = build_q_network("dsqn", (4,), 2, **cfg.model_options())
    progress = {"env_steps": 3000, "obs_shape": [4], "num_actions": 2, "evaluations": []}
    write_checkpoint_files(ckpt, cfg, progress, net)
    (ckpt / "learner").mkdir()  # RLlib's learner state, which --resume checks first
    (ckpt / "learner" / "state.pkl").write_bytes(pickle.dumps({"step": 3000}))
    reg = open_registry(RegistryConfig.resolve(None, run_root=tmp_path))
    now = time.time()
    reg.start_run(
        RunRecord(run_id="laptop", run_dir=str(tmp_path / "laptop"), env="CartPole-v1",
                  model="dsqn", started_at=now, heartbeat_at=now, env_steps=3100,
                  total_steps=9000, host=this_host(), pid=os.getpid())  # a live writer: us
    )  # fmt: skip
    # Found by id and by path alike, and refused: a live process trains that run.
    for target in (["laptop", "--run-dir", str(tmp_path)], [str(tmp_path / "laptop")]):
        assert main(["train", "--resume", *target]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"dsqn: error: run 'laptop' is still running (pid {os.getpid()} ")
    assert main(["runs", "--run-dir", str(tmp_path)]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[:4] == ["RUN", "ID", "ENV", "MODEL"]
    assert row.split()[:5] == ["laptop", "CartPole-v1", "dsqn", "running", "3,100/9,000"]
    assert not ray.is_initialized()


# --------------------------------------------------------------------------------------------
# A real training run: kill -9 after a checkpoint, resume by run id, nothing lost

CARTPOLE = [
    "--env", "CartPole-v1", "--num-env-runners", "1", "--envs-per-runner", "4",
    "--hidden-sizes", "32,32", "--T", "2", "--train-batch-size", "16", "--train-every", "16",
    "--buffer-size", "5000", "--learning-starts", "500", "--target-update-period", "500",
    "--eval-interval", "500", "--eval-episodes", "3", "--eval-epsilon", "0",
    "--checkpoint-interval", "3000",
]  # fmt: skip


def _kill_session(sid: int) -> None:
    """SIGKILL what is left of a process session we started (Ray's processes of a killed driver)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # field 6 of stat: the session id
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(stat.parent.name), signal.SIGKILL)


@pytest.mark.slow
def test_a_run_killed_with_9_resumes_by_run_id_and_loses_nothing(
    tmp_path: Path,
    prefix: str,
    acl_user: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    user, password = acl_user
    url = user_url(user)
    monkeypatch.setenv("DSQN_REDIS_URL", url)  # the same registry for this process's reads
    monkeypatch.setenv("DSQN_REDIS_PASSWORD", password)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DSQN_REDIS_URL": url,
           "DSQN_REDIS_PASSWORD": password}  # fmt: skip
    env.pop("REDISCLI_AUTH", None)
    logs: list[Path] = []
    printed: list[str] = []

    def dsqn(*args: str, **popen: object) -> subprocess.Popen[str]:
        log = tmp_path / f"dsqn-{len(logs)}.log"
        logs.append(log)
        return subprocess.Popen(
            [sys.executable, "-m", "dsqn_rllib.cli", *args, "--registry-prefix", prefix],
            stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path,
            **popen,  # type: ignore[arg-type]
        )  # fmt: skip

    def dsqn_here(*args: str) -> tuple[int, str]:
        """The CLI in this process (a subprocess costs ~10 s of imports on a busy machine)."""
        capsys.readouterr()
        code = main([*args, "--registry-prefix", prefix])
        captured = capsys.readouterr()
        printed.append(captured.out + captured.err)
        return code, printed[-1]

    runs_root = tmp_path / "runs"
    reg = open_registry(RegistryConfig.resolve(url, prefix, run_root=runs_root, stale_after_s=3.0))
    started = time.time()
    driver = dsqn("train", *CARTPOLE, "--total-steps", "1000000", "--run-dir", str(runs_root),
                  "--run-id", "cp", start_new_session=True)  # fmt: skip
    try:
        # Wait for a checkpoint and an evaluation in the registry, and if timing allows (an
        # iteration's size depends on the machine's load) also an evaluation past the
        # checkpoint, which the resumed run must keep, marked superseded.
        deadline, ready_since = time.time() + 240, math.inf
        while True:
            assert driver.poll() is None, logs[0].read_text()[-3000:]
            assert time.time() < deadline, logs[0].read_text()[-3000:]
            run = reg.get_run("cp")
            steps = [e["env_steps"] for e in reg.evaluations("cp")]
            if run is not None and run.latest_checkpoint_steps and steps:
                if max(steps) > run.latest_checkpoint_steps >= min(steps):
                    break
                ready_since = min(ready_since, time.time())
                if time.time() - ready_since > 20:
                    break
            time.sleep(0.5)
        # A second process may not train the same run while it lives.
        code, refused = dsqn_here("train", "--resume", "cp")
        assert code == 2 and refused.startswith("dsqn: error: run 'cp' is still running (pid ")
        assert not ray.is_initialized()

        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        killed_at = time.time()
    finally:
        _kill_session(driver.pid)
    before = reg.get_run("cp")
    evals_before = reg.evaluations("cp")
    assert before is not None and before.latest_checkpoint_steps is not None
    ckpt_steps = before.latest_checkpoint_steps
    progress = json.loads((runs_root / "cp/checkpoints/latest/progress.json").read_text())
    ckpt_steps = progress["env_steps"]  # the checkpoint is the truth (the registry may lag)
    assert before.status == "running" and before.attempt == 0 and before.env_steps >= ckpt_steps
    time.sleep(max(0.0, killed_at + 3.5 - time.time()))
    code, table = dsqn_here("runs", "--json", "--stale-after", "3")
    listed = {r["run_id"]: r for r in json.loads(table)}
    assert listed["cp"]["status"] == "lost" and listed["cp"]["recorded_status"] == "running"
    code, table = dsqn_here("runs", "--stale-after", "3")
    assert code == 0 and " lost " in table.splitlines()[1] and "STATUS" in table

    target = ckpt_steps + 1500
    resumed = dsqn("train", "--resume", "cp", "--total-steps", str(target))  # by run id
    assert resumed.wait(timeout=300) == 0, logs[-1].read_text()[-3000:]
    out = logs[-1].read_text()
    assert f"resumed from {runs_root / 'cp/checkpoints/latest'} at {ckpt_steps:,} env steps" in out

    after = reg.get_run("cp")
    assert after is not None and after.status_at(time.time(), 3) is RunStatus.FINISHED
    assert after.attempt == 1 and after.env_steps >= target
    assert after.latest_checkpoint_steps is not None and after.latest_checkpoint_steps >= target
    # Progress after the resume starts at the checkpoint's step, not 0.
    lines = [json.loads(x) for x in (runs_root / "cp/metrics.jsonl").read_text().splitlines()]
    second = [r["env_steps"] for r in lines if r["attempt"] == 1]
    assert second and min(second) >= ckpt_steps and max(second) >= target
    # Every evaluation recorded before the kill is still there with the same values; those
    # past the checkpoint are marked superseded; the new ones come after the checkpoint.
    evals_after = {(e["env_steps"], e["attempt"]): e for e in reg.evaluations("cp")}
    for e in evals_before:
        kept = evals_after[(e["env_steps"], 0)]
        assert (kept["mean"], kept["std"], kept["max"], kept["returns"]) == (
            e["mean"], e["std"], e["max"], e["returns"],
        )  # fmt: skip
        assert kept.get("superseded", False) == (e["env_steps"] > ckpt_steps)
    new = sorted(k[0] for k in evals_after if k[1] == 1)
    assert new and new[0] > ckpt_steps and new[-1] >= target
    # The run's history (the final checkpoint) runs in step order through the cut.
    final = json.loads((runs_root / "cp/checkpoints/latest/progress.json").read_text())
    history = [(e["env_steps"], e["attempt"]) for e in final["evaluations"]]
    expected = [(e["env_steps"], 0) for e in evals_before if e["env_steps"] <= ckpt_steps]
    assert history[: len(expected)] == expected and history == sorted(history)
    assert history[len(expected) :] == [(s, 1) for s in new]
    # evaluations.jsonl says what the registry says.
    logged = [json.loads(x) for x in (runs_root / "cp/evaluations.jsonl").read_text().splitlines()]
    assert {(e["env_steps"], e["attempt"], e.get("superseded", False)) for e in logged} == {
        (k[0], k[1], e.get("superseded", False)) for k, e in evals_after.items()
    }
    code, table = dsqn_here("runs")
    row = table.splitlines()[1].split()
    assert code == 0 and row[:5] == [
        "cp",
        "CartPole-v1",
        "dsqn",
        "finished",
        f"{after.env_steps:,}/{target:,}",
    ]
    code, shown = dsqn_here("runs", "cp")  # one run with its evaluations
    assert code == 0 and shown.count("superseded") == sum(
        e.get("superseded", False) for e in evals_after.values()
    )

    # Where the password may never be: any file of the run, any output, the stored config.
    assert after.config["registry_url"] == url and after.config["registry_prefix"] == prefix
    for path in [*runs_root.rglob("*"), *logs]:
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
    assert not any(password in text for text in printed)
    superseded = sum(e["env_steps"] > ckpt_steps for e in evals_before)
    print(f"kill at {before.env_steps} steps, checkpoint {ckpt_steps}, resumed to "
          f"{after.env_steps}; evaluations {len(evals_before)} before ({superseded} past the "
          f"checkpoint), {len(new)} new; {time.time() - started:.0f} s")  # fmt: skip


def test_training_goes_on_when_the_registry_is_down_and_catches_up_after(
    tmp_path: Path,
) -> None:
    """The Trainer's registry writes, without Ray: a store that fails while ``down``."""
    from dsqn_rllib.ops.registry import LocalRunRegistry
    from dsqn_rllib.run import Trainer

    class Outage(LocalRunRegistry):
        down = False

        def _write_fields(self, *args: object, **kwargs: object) -> None:
            if self.down:
                raise RegistryError("cannot reach the run registry at test: Connection refused")
            super()._write_fields(*args, **kwargs)  # type: ignore[arg-type]

        def _write_evaluations(self, run_id: str, items: dict[str, str]) -> None:
            if self.down:
                raise RegistryError("cannot reach the run registry at test: Connection refused")
            super()._write_evaluations(run_id, items)

    reg = Outage(RegistryConfig(local_path=tmp_path / "registry.sqlite3"))
    lines: list[str] = []
    cfg = TrainConfig(env="CartPole-v1", run_dir=str(tmp_path), run_id="flaky", total_steps=900)
    trainer = Trainer(cfg, registry=reg, out=lines.append)
    trainer.recorder.retry_s = 0.0  # retry at every write (30 s apart in a real run)
    trainer.recorder.start()
    reg.down = True
    trainer.progress["env_steps"] = 500
    trainer._heartbeat()
    trainer.progress["env_steps"] = 600
    evaluation_600 = evaluation(600, 42.0)
    trainer._all_evaluations.append(evaluation_600)  # what _record_evaluation does
    trainer.recorder.evaluation(evaluation_600)
    trainer._heartbeat()
    assert [line for line in lines if "warning" in line] == [
        "[flaky] warning: cannot reach the run registry at test: Connection refused; "
        "training goes on"
    ]  # once per outage, not per write
    run = reg.get_run("flaky")
    assert run is not None and run.env_steps == 0 and reg.evaluations("flaky") == []
    reg.down = False
    trainer.progress["env_steps"] = 700
    trainer._heartbeat()
    assert lines[-1] == f"[flaky] run registry at {reg.where} answers again"
    run = reg.get_run("flaky")
    assert run is not None and (run.env_steps, run.total_steps, run.status) == (700, 900, "running")
    assert reg.evaluations("flaky") == [evaluation_600]  # the one made during the outage


# --------------------------------------------------------------------------------------------
# A final record the registry could not take waits in the outbox for the next command


def _final_record(run_id: str, attempt: int = 0) -> RunRecord:
    return RunRecord(run_id=run_id, run_dir=f"/runs/{run_id}", env="CartPole-v1", model="dsqn",
                     started_at=100.0, heartbeat_at=200.0, env_steps=900, total_steps=900,
                     attempt=attempt, host=this_host(), pid=os.getpid())  # fmt: skip


def test_a_final_record_deferred_while_redis_was_down_is_written_by_the_next_command(
    prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dsqn_rllib.ops.registry import defer_record, outbox_dir

    config = RegistryConfig.resolve(REDIS_URL, prefix, run_root=tmp_path)
    # The run ended while Redis was away: its last write said "running" at 700 steps.
    live = open_registry(config)
    live.start_run(dataclasses.replace(_final_record("cp"), env_steps=700))
    live.close()
    path = defer_record(config, _final_record("cp"), [evaluation(900, 41.0)],
                        status=RunStatus.FINISHED)  # fmt: skip
    assert path.parent == outbox_dir(config) == tmp_path / "registry-outbox"
    # Another registry (another prefix) does not take it.
    other = open_registry(RegistryConfig.resolve(REDIS_URL, prefix + "-other", run_root=tmp_path))
    assert other.flushed == [] and other.get_run("cp") is None and path.is_file()
    other.close()
    # The next command that opens this registry from this run root writes it: `dsqn runs`.
    assert main(["runs", "--registry-url", REDIS_URL, "--registry-prefix", prefix,
                 "--run-dir", str(tmp_path)]) == 0  # fmt: skip
    out = capsys.readouterr()
    row = out.out.splitlines()[1].split()
    assert row[:5] == ["cp", "CartPole-v1", "dsqn", "finished", "900/900"], out.out
    assert "wrote the final record of run cp" in out.err
    reg = open_registry(config)
    run = reg.get_run("cp")
    assert run is not None and run.status == "finished" and run.finished_at is not None
    assert reg.evaluations("cp") == [evaluation(900, 41.0)]
    assert not path.exists() and reg.flushed == []  # written once
    reg.close()


def test_a_deferred_record_never_overwrites_a_later_attempt(tmp_path: Path) -> None:
    from dsqn_rllib.ops.registry import defer_record

    config = RegistryConfig(local_path=tmp_path / "registry.sqlite3")
    reg = open_registry(config)
    reg.start_run(_final_record("cp", attempt=1))  # resumed elsewhere since
    defer_record(config, _final_record("cp", attempt=0), status=RunStatus.FAILED, error="x")
    defer_record(config, _final_record("new"), status=RunStatus.STOPPED)
    reg.close()
    reg = open_registry(config)
    assert reg.flushed == ["new"]
    old, new = reg.get_run("cp"), reg.get_run("new")
    assert old is not None and (old.attempt, old.status) == (1, "running")
    assert new is not None and new.status == "stopped"
    assert list((tmp_path / "registry-outbox").iterdir()) == []  # both handled
    reg.close()
