"""Bad input on the command line: one clear line, exit 2, and Ray never started."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import ray

from dsqn_rllib.cli import build_parser, config_from_args, main
from dsqn_rllib.config import ApiStack, TrainConfig
from dsqn_rllib.snn.networks import ModelKind


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["train", "--game", "pongg"], "unknown game 'pongg'; closest: pong"),
        (["train", "--game", "space_invader"], "closest: space_invaders"),
        (
            ["train", "--env", "CartPol-v1"],
            "unknown Gymnasium env 'CartPol-v1'; closest: CartPole-v1",
        ),
        (["train", "--T", "0"], "T (simulation steps) must be an integer >= 1"),
        (["train", "--T", "eight"], "--T expects int, got 'eight'"),
        (
            ["train", "--readout", "min-mem"],
            "unknown readout 'min-mem'; allowed: last-mem, max-mem",
        ),
        (["train", "--surrogate", "relu"], "unknown surrogate 'relu'"),
        (["train", "--tau", "0.5"], "tau must be a number >= 1"),
        (["train", "--v-threshold", "-1"], "v_threshold must be greater than v_reset"),
        (["train", "--model", "snn"], "model must be dsqn or dqn, got 'snn'"),
        (["train", "--api-stack", "older"], "api_stack must be new or old"),
        (["train", "--lr", "-0.1"], "lr must be a number > 0.0"),
        (["train", "--grad-clip", "abc"], "--grad-clip expects float, got 'abc'"),
        (["train", "--grad-clip", "0"], "grad_clip must be a number > 0.0"),
        (["train", "--metrics-port", "x"], "--metrics-port expects int, got 'x'"),
        (
            ["train", "--metrics-final-scrape-timeout-s", "-1"],
            "metrics_final_scrape_timeout_s must be a number >= 0.0, got -1.0",
        ),
        (["train", "--gamma", "1.5"], "gamma must be a number >= 0.0 and <= 1.0"),
        (["train", "--num-env-runners", "-1"], "num_env_runners must be an integer >= 0"),
        (["train", "--train-batch-size", "0"], "train_batch_size must be an integer >= 1"),
        (
            ["train", "--buffer-size", "10", "--train-batch-size", "32"],
            "buffer_size must be an integer >= 32",
        ),
        (["train", "--hidden-sizes", "a,b"], "--hidden-sizes expects integers, got 'a,b'"),
        (["train", "--loss", "l1"], "loss must be mse or huber"),
        (["train", "--spike-init", "lsuv"], "spike_init must be one of default, threshold-aware"),
        (
            ["train", "--env", "CartPole-v1", "--spike-init", "threshold-aware"],
            "spike_init threshold-aware applies to a DSQN on an Atari game",
        ),
        (
            ["train", "--spike-init", "threshold-aware", "--api-stack", "old"],
            "spike_init threshold-aware needs --api-stack new",
        ),
        (["train", "--spike-init-rate", "1"], "spike_init_rate must be < 1"),
        (["train", "--silent-layer-patience", "-5"], "silent_layer_patience must be an integer"),
        (["train", "--learner-device", "tpu"], "learner_device must be auto, cpu or cuda"),
        (["train", "--resume", "/nonexistent/run"], "no dsqn checkpoint at '/nonexistent/run'"),
        (["eval", "/nonexistent/ckpt"], "no dsqn checkpoint at '/nonexistent/ckpt'"),
        (["eval", "/nonexistent/ckpt", "--episodes", "0"], "episodes"),
        (["report", "/nonexistent/run"], "no metrics.jsonl with data in '/nonexistent/run'"),
        (
            ["train", "--registry-url", "redis://:hunter2@127.0.0.1:6379/0"],
            "registry_url must not contain a password; put it in DSQN_REDIS_PASSWORD",
        ),
        (["train", "--registry-url", "http://127.0.0.1:6379"], "registry_url must look like"),
        (["train", "--registry-prefix", "a b"], "registry_prefix must be letters, digits"),
        (
            ["train", "--resume", "no-such-run", "--run-dir", "/nonexistent/runs"],
            "no run 'no-such-run': no such directory, and no run registry at "
            "/nonexistent/runs/registry.sqlite3",
        ),
        (["runs", "--stale-after", "soon"], "--stale-after expects float, got 'soon'"),
        (["runs", "--stale-after", "0"], "stale_after_s must be a number > 0"),
        (["runs", "--registry", "redis://:hunter2@host/0"], "must not contain a password"),
        (["runs", "r1", "--run-dir", "/nonexistent/runs"], "no run 'r1': no run registry at"),
    ],
)
def test_bad_values_are_one_line_before_ray_starts(
    argv: list[str],
    fragment: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DSQN_REDIS_URL", raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dsqn: error: ")
    assert fragment in err
    assert err.count("\n") == 1, f"expected one line, got {err!r}"
    assert "hunter2" not in err
    assert not ray.is_initialized()


def test_an_unreachable_run_registry_is_one_line_before_ray_starts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with socket.socket() as probe:  # a port nothing listens on once this socket is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    expected = f"dsqn: error: cannot reach the run registry at {url}: Connection refused\n"
    cartpole = ["train", "--env", "CartPole-v1", "--run-dir", str(tmp_path)]
    for argv in ([*cartpole, "--registry-url", url], ["runs", "--registry", url]):
        assert main(argv) == 2
        assert capsys.readouterr().err == expected
    monkeypatch.setenv("DSQN_REDIS_URL", url)  # the environment's URL, same line
    assert main(cartpole) == 2
    assert capsys.readouterr().err == expected
    assert not ray.is_initialized()
    assert list(tmp_path.iterdir()) == []  # no run directory, no local store


def test_flags_reach_the_config_and_defaults_are_the_papers() -> None:
    args = build_parser().parse_args(
        [
            "train",
            "--game",
            "SpaceInvaders",
            "--model",
            "dqn",
            "--T",
            "4",
            "--readout",
            "mean-mem",
            "--no-bias",
            "--num-env-runners",
            "8",
            "--envs-per-runner",
            "2",
            "--sticky-actions",
            "--api-stack",
            "old",
        ]
    )
    cfg = config_from_args(args)
    assert (
        cfg.game == "space_invaders"
        and cfg.model is ModelKind.DQN
        and cfg.api_stack is ApiStack.OLD
    )
    assert (
        cfg.spiking.T == 4 and cfg.spiking.readout.value == "mean-mem" and cfg.spiking.bias is False
    )
    assert (cfg.num_env_runners, cfg.envs_per_runner, cfg.sticky_actions) == (8, 2, True)
    paper = config_from_args(build_parser().parse_args(["train"]))
    assert (
        paper.game == "pong" and paper.spiking.T == 8 and paper.spiking.readout.value == "max-mem"
    )
    assert (paper.lr, paper.gamma, paper.buffer_size, paper.learning_starts) == (
        2.5e-4,
        0.99,
        1_000_000,
        50_000,
    )
    assert (paper.target_update_period, paper.epsilon_decay_steps, paper.epsilon_end) == (
        10_000,
        1_000_000,
        0.1,
    )
    assert (paper.train_batch_size, paper.train_every, paper.total_steps) == (128, 4, 20_000_000)
    assert (paper.eval_episodes, paper.eval_epsilon, paper.loss) == (30, 0.05, "mse")
    # PyTorch's Adam ε, as the authors' code: Dopamine's 1.5e-4 kept a DSQN silent.
    assert paper.adam_eps == 1e-8


def test_config_round_trips_through_json_form() -> None:
    cfg = (
        TrainConfig(env="CartPole-v1", hidden_sizes=(32, 16))
        .with_spiking(T=3, surrogate="sigmoid")
        .validate()
    )
    again = TrainConfig.from_dict(cfg.to_dict()).validate()
    assert again == cfg


def test_epsilon_schedule_is_linear_then_flat() -> None:
    cfg = TrainConfig(epsilon_start=1.0, epsilon_end=0.1, epsilon_decay_steps=1000)
    assert cfg.epsilon_at(0) == 1.0
    assert cfg.epsilon_at(500) == pytest.approx(0.55)
    assert cfg.epsilon_at(1000) == pytest.approx(0.1)
    assert cfg.epsilon_at(10**9) == pytest.approx(0.1)
