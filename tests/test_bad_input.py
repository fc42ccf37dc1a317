"""Bad input as a user types it: one line (what is wrong, what is allowed), exit 2, no traceback,
Ray never started, and nothing of an existing run overwritten. One test per class of input."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
import torch

from dsqn_rllib.cli import main
from dsqn_rllib.config import TrainConfig
from dsqn_rllib.errors import ConfigError
from dsqn_rllib.ops import preflight
from dsqn_rllib.ops.checkpoints import LEARNER_DIR, write_checkpoint_files
from dsqn_rllib.ops.registry import RegistryConfig, RunRecord, open_registry
from dsqn_rllib.snn.networks import build_q_network


@pytest.fixture(autouse=True)
def _no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local registry only; and input that passes every check fails the test at once instead
    of training (the paper's default is 20M steps)."""
    monkeypatch.delenv("DSQN_REDIS_URL", raising=False)
    from dsqn_rllib.run import Trainer

    def refuse(self: Trainer, *args: object, **kwargs: object) -> None:
        raise AssertionError("the input passed every check: training would start")

    monkeypatch.setattr(Trainer, "__init__", refuse)


def one_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run ``dsqn argv``; assert exit 2, one ``dsqn: error:`` line and no Ray; return it."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dsqn: error: ") and err.count("\n") == 1, err
    assert not ray.is_initialized()
    return err


def fingerprint(root: Path) -> dict[str, str]:
    """Every file under ``root`` and its content hash (a refused command changes none)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def make_run(root: Path, run_id: str = "cp") -> Path:
    """A run directory with a latest checkpoint laid out as the Trainer writes it: the config,
    the progress, the weights and RLlib's learner state (pickles, as Ray 2.60 writes them)."""
    cfg = TrainConfig(env="CartPole-v1", hidden_sizes=(8,), run_dir=str(root), run_id=run_id)
    cfg = cfg.with_spiking(T=2).validate()
    run = root / run_id
    latest = run / "checkpoints" / "latest"
    module = latest / LEARNER_DIR / "learner" / "rl_module" / "default_policy"
    module.mkdir(parents=True)
    net = build_q_network(cfg.model, (4,), 2, **cfg.model_options())
    progress = {"env_steps": 2_000, "updates": 300, "obs_shape": [4], "num_actions": 2}
    write_checkpoint_files(latest, cfg, progress, net)
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    (module / "module_state.pkl").write_bytes(pickle.dumps(state, protocol=5))
    (latest / LEARNER_DIR / "learner" / "state.pkl").write_bytes(
        pickle.dumps({"optimizer": {"step": 300, "lr": 2.5e-4}}, protocol=5)
    )
    (latest / LEARNER_DIR / "metadata.json").write_text(json.dumps({"ray_version": "2.60.0"}))
    (run / "train_config.json").write_text(json.dumps(cfg.to_dict()))
    return run


# --------------------------------------------------------------------------------------------
# A damaged run on --resume: nothing starts, nothing is written


def _cut(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


DAMAGE = {
    "progress.json cut short": lambda c: _cut(c / "progress.json", 20),
    "progress.json without its step count": lambda c: (c / "progress.json").write_text("{}"),
    "train_config.json garbage": lambda c: (c / "train_config.json").write_text("garbage"),
    "train_config.json a list": lambda c: (c / "train_config.json").write_text("[1, 2]"),
    "train_config.json a bad value": lambda c: (c / "train_config.json").write_text(
        json.dumps({"env": "CartPole-v1", "spiking": {"T": 0}})
    ),
    "learner state missing": lambda c: shutil.rmtree(c / LEARNER_DIR),
    "learner pickle cut short": lambda c: _cut(
        c / LEARNER_DIR / "learner/rl_module/default_policy/module_state.pkl", 100
    ),
    "learner pickle overwritten": lambda c: (c / LEARNER_DIR / "learner/state.pkl").write_bytes(
        os.urandom(64)
    ),
    "learner metadata garbage": lambda c: (c / LEARNER_DIR / "metadata.json").write_text("{"),
    "model.pt cut short": lambda c: _cut(c / "model.pt", 200),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_is_one_line_on_resume_and_the_run_is_left_as_it_was(
    damage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run(tmp_path)
    DAMAGE[damage](run / "checkpoints" / "latest")
    before = fingerprint(tmp_path)
    err = one_line(capsys, ["train", "--resume", str(run)])
    assert "checkpoint" in err and ("damaged" in err or "no learner state" in err), err
    assert fingerprint(tmp_path) == before  # no registry, config or log written


def test_an_intact_checkpoint_passes_the_resume_checks(tmp_path: Path) -> None:
    from dsqn_rllib.ops.checkpoints import check_resumable, read_checkpoint

    ckpt, cfg, progress = read_checkpoint(make_run(tmp_path))
    check_resumable(ckpt, cfg)
    assert progress["env_steps"] == 2_000


def test_resume_refuses_an_empty_name_flags_it_would_ignore_and_no_steps_to_go(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run(tmp_path)
    before = fingerprint(tmp_path)
    # An empty --resume used to start a new 20M-step run.
    assert "--resume needs a run directory" in one_line(capsys, ["train", "--resume", ""])
    err = one_line(capsys, ["train", "--resume", str(run), "--lr", "0.1", "--T", "3"])
    assert "--lr, --T cannot change it" in err and "--total-steps" in err
    err = one_line(capsys, ["train", "--resume", str(run), "--preset", "laptop"])
    assert "--preset cannot change it" in err
    err = one_line(capsys, ["train", "--resume", str(run), "--total-steps", "1500"])
    assert "--total-steps 1,500 is not past the 2,000 env steps" in err
    assert fingerprint(tmp_path) == before


def test_a_new_run_never_writes_into_an_existing_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_run(tmp_path)
    before = fingerprint(tmp_path)
    err = one_line(
        capsys, ["train", "--env", "CartPole-v1", "--run-dir", str(tmp_path), "--run-id", "cp"]
    )
    assert "already holds run 'cp'" in err and "--resume" in err
    assert fingerprint(tmp_path) == before


# --------------------------------------------------------------------------------------------
# Where eval and report write


def test_report_out_into_an_unwritable_place_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run(tmp_path)
    (run / "metrics.jsonl").write_text(json.dumps({"env_steps": 1, "time": 1.0}) + "\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    err = one_line(capsys, ["report", str(run), "--out", str(blocker / "plots")])
    assert f"--out '{blocker / 'plots'}': cannot create it" in err


def test_eval_gif_into_an_unwritable_place_fails_before_the_evaluation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run(tmp_path)
    started = time.monotonic()
    err = one_line(capsys, ["eval", str(run), "--gif", "/nonexistent/dir/episode.gif"])
    assert "--gif '/nonexistent/dir/episode.gif': the folder '/nonexistent/dir' does not" in err
    err = one_line(capsys, ["eval", str(run), "--gif", str(tmp_path)])
    assert "is a folder; give a file name" in err
    assert time.monotonic() - started < 20  # no 30-episode evaluation first


def test_eval_gif_of_a_classic_control_env_without_pygame_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("PIL")
    try:
        import pygame  # noqa: F401

        pytest.skip("pygame is installed: CartPole renders")
    except ImportError:
        pass
    run = make_run(tmp_path)
    err = one_line(capsys, ["eval", str(run), "--gif", str(tmp_path / "cp.gif")])
    assert "--gif on CartPole-v1 cannot render frames: pygame is not installed" in err
    assert not (tmp_path / "cp.gif").exists()


# --------------------------------------------------------------------------------------------
# The output pipe closed early: `dsqn runs | head`


def test_runs_into_a_pipe_closed_early_ends_quietly(tmp_path: Path) -> None:
    registry = open_registry(RegistryConfig(local_path=tmp_path / "registry.sqlite3"))
    config = TrainConfig(env="CartPole-v1").to_dict()
    for i in range(200):  # far more JSON than a pipe buffers (64 KiB)
        registry.start_run(
            RunRecord(run_id=f"run-{i:03d}", config=config, started_at=i, heartbeat_at=i)
        )
    registry.close()
    env = {k: v for k, v in os.environ.items() if k != "DSQN_REDIS_URL"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dsqn_rllib.cli", "runs", "--json", "--run-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == b"[\n"
    proc.stdout.close()  # what `head -1` does once it has its line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141  # 128 + SIGPIPE, as a C tool killed by it
    assert err == "", err


# --------------------------------------------------------------------------------------------
# The machine: metrics endpoint, learner device, memory


def test_a_metrics_port_in_use_and_a_bad_metrics_host_are_one_line_before_ray(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cartpole = ["train", "--env", "CartPole-v1"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        err = one_line(capsys, [*cartpole, "--metrics-port", str(port)])
        assert f"--metrics-port {port} is already in use on 127.0.0.1" in err
    err = one_line(capsys, [*cartpole, "--metrics-port", "0", "--metrics-host", "no-such.invalid"])
    assert "--metrics-host 'no-such.invalid' does not resolve" in err
    err = one_line(capsys, [*cartpole, "--metrics-port", "0", "--metrics-host", "192.0.2.1"])
    assert "cannot serve metrics on 192.0.2.1:0" in err  # an address of another machine


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_learner_device_cuda_without_a_gpu_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = one_line(capsys, ["train", "--env", "CartPole-v1", "--learner-device", "cuda"])
    assert "--learner-device cuda, but" in err and "use --learner-device cpu or auto" in err


def test_memory_is_checked_against_the_machine_before_allocating(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The paper's T of 100,000 would ask for terabytes of activations (it tried 80 GB first).
    err = one_line(capsys, ["train", "--game", "pong", "--T", "100000", "--total-steps", "100"])
    assert "learner activations" in err and "for --T 100000 x --train-batch-size 128" in err
    assert "lower --T or --train-batch-size" in err
    err = one_line(capsys, ["train", "--buffer-size", "1000000000"])
    assert "replay 7072.0 GB for --buffer-size 1,000,000,000" in err
    assert "lower --buffer-size" in err
    # The estimate itself: the paper's replay is ~7.1 GB of uint8 frames, T x batch scales.
    paper = preflight.memory_needs(TrainConfig().validate())
    assert 7.0e9 < paper.replay < 7.2e9
    t16 = preflight.memory_needs(TrainConfig().with_spiking(T=16).validate())
    assert t16.activations == 2 * paper.activations
    # What decides: the memory available to this process.
    with pytest.raises(ConfigError, match=r"this machine has 4.0 GB available"):
        preflight.check_memory(TrainConfig().validate(), available=4 * 10**9)
    preflight.check_memory(TrainConfig().validate(), available=64 * 10**9)


def test_the_preflight_measures_this_machine() -> None:
    available = preflight.available_memory()
    assert available is None or available > 0


# --------------------------------------------------------------------------------------------
# Values that were accepted silently


def test_an_atari_env_id_as_env_trains_the_game_with_the_papers_preprocessing() -> None:
    for env_id in ("ALE/Pong-v5", "ale_py:ALE/Pong-v5", "PongNoFrameskip-v4"):
        cfg = TrainConfig(env=env_id).validate()
        assert (cfg.game, cfg.env, cfg.is_atari) == ("pong", None, True)
    with pytest.raises(ConfigError, match="unknown game 'ALE/Pongg-v5'"):
        TrainConfig(env="ALE/Pongg-v5").validate()


def test_epsilon_that_would_rise_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line(capsys, ["train", "--epsilon-start", "0.05", "--epsilon-end", "0.1"])
    assert "epsilon_start (0.05) must be >= epsilon_end (0.1)" in err
    TrainConfig(epsilon_start=0.1, epsilon_end=0.1).validate()  # a constant ε is fine


def test_settings_that_make_no_sense_together_are_said_at_start() -> None:
    cfg = TrainConfig(env="CartPole-v1", total_steps=1_000, learning_starts=5_000).validate()
    notes = cfg.notes()
    assert any("never updates the network" in n for n in notes), notes
    assert any("only the final evaluation runs" in n for n in notes), notes
    assert TrainConfig(total_steps=10**8, learning_starts=10**4).validate().notes() == []


def test_game_and_env_together_and_a_misspelt_flag_are_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = one_line(capsys, ["train", "--game", "pong", "--env", "CartPole-v1"])
    assert "--game and --env exclude each other" in err
    err = one_line(capsys, ["train", "--learning-start", "10"])
    assert "unrecognized arguments: --learning-start 10 (did you mean --learning-starts?)" in err
