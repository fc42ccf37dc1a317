"""Stopping a run without losing it: the wall-time checkpoint schedule, a checkpoint that cannot
be written (a full disk), the stop-signal logic, and real ``dsqn train`` processes stopped with
SIGINT (Ctrl-C), SIGTERM (schedulers, ``docker stop``) and a second Ctrl-C, then resumed."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dsqn_rllib.cli import main
from dsqn_rllib.config import TrainConfig
from dsqn_rllib.errors import ConfigError
from dsqn_rllib.ops import checkpoints
from dsqn_rllib.ops.checkpoints import CheckpointError, CheckpointSchedule, write_atomically
from dsqn_rllib.ops.registry import RegistryConfig, RunStatus, open_registry
from dsqn_rllib.ops.stopping import RunAborted, StopSignals

# --------------------------------------------------------------------------------------------
# The checkpoint schedule: env steps or wall time, whichever is due first


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_the_latest_checkpoint_is_due_by_steps_or_by_wall_time() -> None:
    clock = FakeClock()
    schedule = CheckpointSchedule(1_000, minutes=30.0, env_steps=0, clock=clock)
    assert not schedule.due(999)
    assert schedule.due(1_000)  # the step interval
    schedule.saved(1_000)
    clock.now += 29 * 60
    assert not schedule.due(1_500)
    clock.now += 60
    assert schedule.due(1_500)  # 30 minutes since the last save, long before step 2,000
    schedule.saved(1_500)  # a save of any cause restarts both clocks
    assert schedule.next_step == 2_000 and not schedule.due(1_999)
    assert schedule.due(2_000)


def test_either_interval_can_be_off_and_a_resumed_run_counts_from_its_step() -> None:
    clock = FakeClock()
    by_time = CheckpointSchedule(0, minutes=0.5, env_steps=7_000, clock=clock)
    assert not by_time.due(10**12)
    clock.now += 30
    assert by_time.due(7_001)
    by_steps = CheckpointSchedule(250_000, minutes=0.0, env_steps=260_000, clock=clock)
    clock.now += 10**9
    assert not by_steps.due(499_999) and by_steps.due(500_000)


def test_checkpoint_every_minutes_is_a_documented_flag_and_validated(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert TrainConfig().checkpoint_every_minutes == 30.0
    assert main(["train", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--checkpoint-every-minutes FLOAT Also write the latest" in help_text
    assert "(0: by env steps only). (default: 30.0)" in help_text
    assert TrainConfig(checkpoint_every_minutes=0).validate().checkpoint_every_minutes == 0
    with pytest.raises(ConfigError, match=r"checkpoint_every_minutes must be a number >= 0\.0"):
        TrainConfig(checkpoint_every_minutes=-1.0).validate()


# --------------------------------------------------------------------------------------------
# A checkpoint that cannot be written


def _full_disk(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_save_on_a_full_disk_keeps_the_previous_checkpoint_and_leaves_no_staging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    latest = tmp_path / "checkpoints" / "latest"
    write_atomically(latest, lambda d: (d / "model.pt").write_text("good"))
    # The disk fills up halfway through the next checkpoint's files.
    monkeypatch.setattr(checkpoints.torch, "save", _full_disk)
    net_cfg = TrainConfig(env="CartPole-v1", hidden_sizes=(4,)).validate()

    def fill(staging: Path) -> None:
        (staging / "learner").mkdir()
        from dsqn_rllib.snn.networks import build_q_network

        net = build_q_network(net_cfg.model, (4,), 2, **net_cfg.model_options())
        checkpoints.write_checkpoint_files(staging, net_cfg, {"env_steps": 1}, net)

    with pytest.raises(CheckpointError) as raised:
        write_atomically(latest, fill)
    message = str(raised.value)
    assert message == (
        f"cannot write the checkpoint {latest}: No space left on device; "
        f"the previous one at {latest} is kept"
    )
    assert raised.value.errno == errno.ENOSPC and "\n" not in message
    assert (latest / "model.pt").read_text() == "good"
    assert sorted(p.name for p in latest.parent.iterdir()) == ["latest"]  # no latest.tmp


def test_a_swap_cut_between_its_renames_is_taken_back(tmp_path: Path) -> None:
    latest = tmp_path / "latest"
    write_atomically(latest, lambda d: (d / "model.pt").write_text("one"))
    os.replace(latest, tmp_path / "latest.old")  # killed after the first rename
    write_atomically(latest, lambda d: (d / "model.pt").write_text("two"))
    assert (latest / "model.pt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]

    def interrupted(staging: Path) -> None:
        (staging / "model.pt").write_text("three")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(latest, interrupted)
    assert (latest / "model.pt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]


# --------------------------------------------------------------------------------------------
# The stop signals


def test_a_signal_asks_to_stop_a_second_one_aborts_and_the_old_handlers_come_back() -> None:
    def before(signum: int, frame: object) -> None:
        raise AssertionError("the previous handler must not run while ours is installed")

    previous = signal.signal(signal.SIGTERM, before)
    previous_int = signal.getsignal(signal.SIGINT)  # (Tune, run earlier in this process, sets one)
    try:
        with StopSignals(prefix="[t] ") as stop:
            assert not stop.requested and stop.exit_code is None
            os.kill(os.getpid(), signal.SIGTERM)  # a real signal, handled in this thread
            time.sleep(0.05)
            assert stop.requested and stop.signum == signal.SIGTERM and stop.exit_code == 143
            with pytest.raises(RunAborted) as aborted:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
            assert aborted.value.exit_code == 130 and isinstance(aborted.value, KeyboardInterrupt)
        assert signal.getsignal(signal.SIGTERM) is before
        assert signal.getsignal(signal.SIGINT) is previous_int
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_second_signal_during_ray_get_is_still_an_abort() -> None:
    """Ray's ``ray.get`` runs the handler from its wait loop and hands back a plain
    KeyboardInterrupt (the cause of a CI run where the abort line went missing)."""
    import threading

    import ray

    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)

    @ray.remote
    def slow() -> int:
        time.sleep(20)
        return 1

    with StopSignals() as stop:
        stop.request(signal.SIGINT)  # the first Ctrl-C: only a flag
        assert stop.aborted(KeyboardInterrupt()) is None  # not an abort yet
        pending = slow.remote()
        threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
        with pytest.raises(KeyboardInterrupt) as raised:
            ray.get(pending, timeout=30)
    aborted = stop.aborted(raised.value)
    assert isinstance(aborted, RunAborted) and aborted.exit_code == 130
    assert stop.aborted(ValueError("other")) is None


# --------------------------------------------------------------------------------------------
# Real runs

CARTPOLE = [
    "--env", "CartPole-v1", "--num-env-runners", "1", "--envs-per-runner", "4",
    "--hidden-sizes", "32,32", "--T", "2", "--train-batch-size", "16", "--train-every", "16",
    "--buffer-size", "5000", "--learning-starts", "500", "--target-update-period", "500",
    "--eval-interval", "0",
]  # fmt: skip


def _start(tmp_path: Path, *flags: str) -> tuple[subprocess.Popen[str], Path]:
    """``dsqn train`` as a user types it, in its own session (a terminal's process group)."""
    runs = tmp_path / "runs"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("DSQN_REDIS_URL", None)
    driver = subprocess.Popen(
        [sys.executable, "-m", "dsqn_rllib.cli", "train", *CARTPOLE, *flags,
         "--total-steps", "10000000", "--run-dir", str(runs), "--run-id", "cp"],
        stdout=(tmp_path / "out.log").open("w"), stderr=(tmp_path / "err.log").open("w"),
        text=True, env=env, cwd=tmp_path, start_new_session=True,
    )  # fmt: skip
    return driver, runs


def _metrics(runs: Path) -> list[dict]:
    path = runs / "cp" / "metrics.jsonl"
    if not path.is_file():
        return []
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
            break
    return lines


def _wait_for_iterations(driver: subprocess.Popen[str], runs: Path, tmp_path: Path, n: int):
    deadline = time.time() + 120
    while len(_metrics(runs)) < n:
        assert driver.poll() is None, (tmp_path / "err.log").read_text()[-3000:]
        assert time.time() < deadline, (tmp_path / "err.log").read_text()[-3000:]
        time.sleep(0.2)


def _finish(driver: subprocess.Popen[str]) -> None:
    if driver.poll() is None:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()


_MASK_PROBE = """
import os
from dsqn_rllib.run import ensure_ray

def status(pid):
    lines = open(f"/proc/{pid}/status").read().splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line)

ensure_ray(0)
family = {os.getpid()}
for _ in range(3):  # children, grandchildren, ...
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(status(pid)["PPid"]) in family:
                family.add(int(pid))
        except OSError:  # gone meanwhile
            pass
for pid in sorted(family):
    info = status(pid)
    print(info["Name"].strip() if pid != os.getpid() else "driver", int(info["SigBlk"], 16))
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads /proc")
def test_rays_own_processes_leave_a_group_sigterm_to_the_driver() -> None:
    """The GCS and raylet of the driver's local Ray start with SIGTERM blocked: a SIGTERM to the
    whole process group (`timeout`, `scancel`) must not shut Ray down under the stopping driver
    (seen: no checkpoint, the run lost). The driver itself keeps SIGTERM, to stop cleanly."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run(
        [sys.executable, "-c", _MASK_PROBE], capture_output=True, text=True, timeout=180,
        env=env, check=True,
    ).stdout  # fmt: skip
    masks = dict(line.split() for line in out.splitlines() if line.split()[0] in
                 ("driver", "gcs_server", "raylet"))  # fmt: skip
    sigterm, sigint = 1 << (signal.SIGTERM - 1), 1 << (signal.SIGINT - 1)
    assert set(masks) == {"driver", "gcs_server", "raylet"}, out
    assert not int(masks["driver"]) & sigterm
    for name in ("gcs_server", "raylet"):
        assert int(masks[name]) & sigterm and int(masks[name]) & sigint, (name, masks)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code", "to_group"),
    [(signal.SIGINT, 130, True), (signal.SIGTERM, 143, False), (signal.SIGTERM, 143, True)],
    ids=["SIGINT", "SIGTERM", "SIGTERM-to-group"],
)
def test_a_signal_stops_the_run_with_a_checkpoint_and_it_resumes(
    signum: int,
    code: int,
    to_group: bool,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started = time.time()
    driver, runs = _start(tmp_path, "--checkpoint-interval", "1000000")
    try:
        _wait_for_iterations(driver, runs, tmp_path, 3)
        if to_group:  # Ctrl-C (the terminal), `timeout`, Slurm: the whole process group
            os.killpg(driver.pid, signum)
        else:  # `docker stop`, `ray job stop`: the main process
            os.kill(driver.pid, signum)
        signalled = time.time()
        assert driver.wait(timeout=60) == code
        stop_s = time.time() - signalled
    finally:
        _finish(driver)
    out, err = (tmp_path / "out.log").read_text(), (tmp_path / "err.log").read_text()
    assert "Traceback" not in err + out and "SIGABRT" not in err, err  # nor Ray's C++ dump
    name = signal.Signals(signum).name
    assert f"[cp] {name}: stopping after this iteration and saving a checkpoint" in err
    last_step = _metrics(runs)[-1]["env_steps"]
    latest = runs / "cp" / "checkpoints" / "latest"
    resume = "dsqn train --resume cp"  # run from tmp_path: the default ./runs holds the run
    stopped = [line for line in out.splitlines() if "resume with:" in line]
    assert stopped == [
        f"[cp] stopped by {name} at {last_step:,} env steps; checkpoint {latest}; "
        f"resume with: {resume}"
    ]
    assert json.loads((latest / "progress.json").read_text())["env_steps"] >= last_step
    assert sorted(p.name for p in latest.parent.iterdir()) == ["latest"]  # no latest.tmp
    registry = open_registry(RegistryConfig.resolve(None, run_root=runs))
    run = registry.get_run("cp")
    assert run is not None and run.status_at(time.time(), 120) is RunStatus.STOPPED
    assert run.latest_checkpoint_steps == last_step and run.error is None
    capsys.readouterr()
    assert main(["runs", "--run-dir", str(runs)]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[3] == "stopped"

    # The printed command (with a little more to do) continues from the checkpoint's step.
    monkeypatch.chdir(tmp_path)
    target = last_step + 1_000
    assert main([*resume.split()[1:], "--total-steps", str(target)]) == 0
    printed = capsys.readouterr().out
    assert f"resumed from {latest} at {last_step:,} env steps" in printed
    run = registry.get_run("cp")
    assert run is not None and run.status == RunStatus.FINISHED.value and run.attempt == 1
    assert run.env_steps >= target
    second = [r["env_steps"] for r in _metrics(runs) if r["attempt"] == 1]
    # Counting goes on from the checkpoint (a busy machine's first iteration may sample nothing).
    assert second and min(second) >= last_step and max(second) >= target
    print(f"{name}: stopped in {stop_s:.1f} s at {last_step} steps; {time.time() - started:.0f} s")


@pytest.mark.slow
def test_a_second_ctrl_c_aborts_at_once_and_keeps_the_last_good_checkpoint(
    tmp_path: Path,
) -> None:
    driver, runs = _start(tmp_path, "--checkpoint-interval", "2000")
    latest = runs / "cp" / "checkpoints" / "latest"
    try:
        _wait_for_iterations(driver, runs, tmp_path, 2)
        while not (latest / "progress.json").is_file():
            assert driver.poll() is None, (tmp_path / "err.log").read_text()[-3000:]
            time.sleep(0.2)
        os.killpg(driver.pid, signal.SIGINT)
        deadline = time.time() + 30
        while "again to abort" not in (tmp_path / "err.log").read_text():
            assert time.time() < deadline
            time.sleep(0.05)
        os.killpg(driver.pid, signal.SIGINT)
        signalled = time.time()
        assert driver.wait(timeout=30) == 130
        abort_s = time.time() - signalled
    finally:
        _finish(driver)
    out, err = (tmp_path / "out.log").read_text(), (tmp_path / "err.log").read_text()
    assert "Traceback" not in err + out, err
    kept = json.loads((latest / "progress.json").read_text())["env_steps"]
    assert [line for line in out.splitlines() if "aborted" in line] == [
        f"[cp] aborted by a second SIGINT; last good checkpoint: {latest.resolve()}"
    ]
    assert sorted(p.name for p in latest.parent.iterdir()) == ["latest"]
    run = open_registry(RegistryConfig.resolve(None, run_root=runs)).get_run("cp")
    assert run is not None and run.status == RunStatus.FAILED.value and run.error == "aborted"
    assert run.latest_checkpoint_steps == kept
    print(f"aborted {abort_s:.1f} s after the second Ctrl-C; checkpoint at {kept} kept")


@pytest.mark.slow
def test_a_full_disk_fails_the_run_in_one_line_and_keeps_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import dsqn_rllib.run

    monkeypatch.delenv("DSQN_REDIS_URL", raising=False)
    real_write = checkpoints.write_checkpoint_files
    calls = []

    def second_write_fills_the_disk(path: Path, *args: object) -> None:
        calls.append(path)
        if len(calls) == 1:
            return real_write(path, *args)  # type: ignore[arg-type]
        (path / "model.pt").write_bytes(b"half")
        _full_disk()

    monkeypatch.setattr(dsqn_rllib.run, "write_checkpoint_files", second_write_fills_the_disk)
    runs = tmp_path / "runs"
    code = main(["train", *CARTPOLE, "--checkpoint-interval", "1000", "--total-steps", "100000",
                 "--run-dir", str(runs), "--run-id", "cp"])  # fmt: skip
    captured = capsys.readouterr()
    latest = runs / "cp" / "checkpoints" / "latest"
    assert code == 1 and len(calls) == 2
    assert captured.err.splitlines()[-1] == (
        f"dsqn: error: cannot write the checkpoint {latest}: No space left on device; "
        f"the previous one at {latest} is kept"
    )
    # No traceback through our code (Ray's log handlers may still hold an earlier test's
    # captured stream and complain about it: not this run's output).
    assert "Traceback" not in captured.out and "dsqn_rllib" + os.sep not in captured.err
    kept = json.loads((latest / "progress.json").read_text())["env_steps"]
    assert 1_000 <= kept < 100_000
    assert sorted(p.name for p in latest.parent.iterdir()) == ["latest"]
    run = open_registry(RegistryConfig.resolve(None, run_root=runs)).get_run("cp")
    assert run is not None and run.status == RunStatus.FAILED.value
    assert run.error is not None and "No space left on device" in run.error
    assert run.latest_checkpoint_steps == kept
