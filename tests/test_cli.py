"""Bad input on the command line: one clear line, exit 2, and Ray never started."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest
import ray

from dsqn_rllib.cli import config_from_flags, main
from dsqn_rllib.config import ApiStack, TrainConfig
from dsqn_rllib.snn.networks import ModelKind, Readout
from dsqn_rllib.train_flags import parse_train_flags


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["train", "--game", "pongg"], "unknown game 'pongg'; closest: pong"),
        (["train", "--game", "space_invader"], "closest: space_invaders"),
        (
            ["train", "--env", "CartPol-v1"],
            "unknown env 'CartPol-v1': not a Gymnasium id (closest Gymnasium ids: CartPole-v1",
        ),
        (["train", "--T", "0"], "T (simulation steps) must be an integer >= 1"),
        (["train", "--T", "eight"], "--T expects int, got 'eight'"),
        (
            ["train", "--readout", "min-mem"],
            "--readout 'min-mem' is not allowed (did you mean mean-mem?); allowed: last-mem, "
            "max-mem, mean-mem, firing-rate",
        ),
        (
            ["train", "--surrogate", "relu"],
            "--surrogate 'relu' is not allowed; allowed: atan, sigmoid, rectangular",
        ),
        (["train", "--tau", "0.5"], "tau must be a number >= 1"),
        (["train", "--v-threshold", "-1"], "v_threshold must be greater than v_reset"),
        (["train", "--model", "snn"], "--model 'snn' is not allowed; allowed: dsqn, dqn"),
        (
            ["train", "--api-stack", "older"],
            "--api-stack 'older' is not allowed (did you mean old?)",
        ),
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
        (["train", "--loss", "l1"], "--loss 'l1' is not allowed; allowed: mse, huber"),
        (
            ["train", "--spike-init", "lsuv"],
            "--spike-init 'lsuv' is not allowed; allowed: default, threshold-aware",
        ),
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
        (
            ["train", "--learner-device", "tpu"],
            "--learner-device 'tpu' is not allowed (did you mean cpu?); allowed: auto, cpu, cuda",
        ),
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
    argv = ["--game", "SpaceInvaders", "--model", "dqn", "--T", "4", "--readout", "mean-mem",
            "--no-bias", "--num-env-runners", "8", "--envs-per-runner", "2", "--sticky-actions",
            "--api-stack", "old"]  # fmt: skip
    cfg = config_from_flags(parse_train_flags(argv))
    assert (
        cfg.game == "space_invaders"
        and cfg.model is ModelKind.DQN
        and cfg.api_stack is ApiStack.OLD
    )
    assert (
        cfg.spiking.T == 4 and cfg.spiking.readout.value == "mean-mem" and cfg.spiking.bias is False
    )
    assert (cfg.num_env_runners, cfg.envs_per_runner, cfg.sticky_actions) == (8, 2, True)
    paper = config_from_flags(parse_train_flags([]))
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


# --------------------------------------------------------------------------------------------
# Presets, config files, the effective config and the help


def test_a_preset_then_a_config_file_then_flags(tmp_path: Path) -> None:
    from dsqn_rllib.presets import PRESETS

    laptop = config_from_flags(parse_train_flags(["--preset", "laptop"]))
    assert (laptop.env, laptop.game, laptop.total_steps, laptop.stop_eval_return) == (
        "CartPole-v1", None, 60_000, 475.0,
    )  # fmt: skip
    assert (laptop.spiking.T, laptop.loss) == (PRESETS["laptop"]["spiking"]["T"], "huber")
    file = tmp_path / "my.toml"
    file.write_text('lr = 1e-3\nseed = 7\n[spiking]\nT = 4\nreadout = "mean-mem"\n')
    argv = ["train", "--preset", "laptop", "--config", str(file), "--seed", "3"]
    cfg = config_from_flags(parse_train_flags(argv[1:]))
    assert (cfg.lr, cfg.seed, cfg.spiking.T, cfg.spiking.readout.value) == (1e-3, 3, 4, "mean-mem")
    assert cfg.total_steps == 60_000  # from the preset, untouched by the file
    # A game given on top of a CartPole preset replaces its env.
    pong = config_from_flags(parse_train_flags(["--preset", "laptop", "--game",
                                                       "breakout"]))  # fmt: skip
    assert (pong.game, pong.env) == ("breakout", None)


def test_print_config_writes_a_file_that_config_reads_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--preset", "laptop", "--T", "3", "--metrics-port", "0"]
    assert main([*argv, "--print-config"]) == 0
    toml = capsys.readouterr().out
    assert "[spiking]" in toml and "T = 3" in toml and 'env = "CartPole-v1"' in toml
    (tmp_path / "run.toml").write_text(toml)
    again = config_from_flags(parse_train_flags(["--config",
                                                        str(tmp_path / "run.toml")]))  # fmt: skip
    assert again == config_from_flags(parse_train_flags(argv[1:]))
    assert not ray.is_initialized()
    # A run's train_config.json is a config file too.
    (tmp_path / "train_config.json").write_text(json.dumps(again.to_dict()))
    saved = str(tmp_path / "train_config.json")
    from_json = config_from_flags(parse_train_flags(["--config", saved]))
    assert from_json == again


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("lrr = 1e-3\n", "unknown option 'lrr' (did you mean lr?)"),
        ("[spiking]\nTT = 4\n", "unknown option 'TT' (did you mean T?)"),
        ("lr = \n", "is not valid TOML"),
        ("gamma = 2.0\n", "gamma must be a number >= 0.0 and <= 1.0"),
    ],
)
def test_a_bad_config_file_is_one_line(
    text: str, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "bad.toml"
    file.write_text(text)
    assert main(["train", "--config", str(file)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1, err
    assert main(["train", "--preset", "laptopp"]) == 2
    assert "unknown preset 'laptopp' (did you mean laptop?)" in capsys.readouterr().err


def _help_groups(text: str) -> dict[str, str]:
    """tyro's --help (its plain form, off a terminal) as {group title: its text, wrapped lines
    joined}."""
    parts = re.split(r"\n (\S[^\n]*?) *\n -{20,} *\n", text)
    return {
        title: " ".join(body.split()) for title, body in zip(parts[1::2], parts[2::2], strict=True)
    }


def test_the_help_groups_the_flags_by_the_configs_sections_with_choices_and_defaults(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dsqn_rllib.snn.networks import SpikingConfig
    from dsqn_rllib.train_flags import field_docs

    assert main(["train", "--help"]) == 0
    groups = _help_groups(capsys.readouterr().out)
    assert list(groups) == [
        "options", "run-setup options", "environment options", "model options",
        "spiking-network options", "learning options", "pipeline options",
        "evaluation-and-checkpoints options", "ops options",
    ]  # fmt: skip
    # Each field's flag sits in the group of its config section, with its docstring as help.
    section_group = {"Environment": "environment", "Model": "model",
                     "Learning (the authors' DQN)": "learning",
                     "Pipeline: sampling and learning resources": "pipeline",
                     "Evaluation and checkpoints": "evaluation-and-checkpoints",
                     "Ops: health, metrics, run directory and run registry": "ops"}  # fmt: skip
    for cls in (TrainConfig, SpikingConfig):
        for name, doc in field_docs(cls).items():
            if name == "spiking":
                continue
            group = "spiking-network" if cls is SpikingConfig else section_group[doc.section]
            body = groups[f"{group} options"]
            flag = "--" + name.replace("_", "-")
            assert re.search(rf"(^| ){flag}[ ,]", body), (name, group)
            assert doc.help and " ".join(doc.help.split()) in body, name
    for group in ("run-setup", "environment", "model", "spiking-network"):
        for flag in ("--preset", "--config", "--print-config", "--resume"):
            assert (flag in groups[f"{group} options"]) == (group == "run-setup")
    assert "--readout {last-mem,max-mem,mean-mem,firing-rate}" in groups["spiking-network options"]
    assert "--model {dsqn,dqn}" in groups["model options"]
    assert "--loss {mse,huber}" in groups["learning options"]
    learning, ops = groups["learning options"], groups["ops options"]
    assert "Env steps collected before the first update. (default: 50000)" in learning
    assert "--metrics-port {none}|INT" in ops and "port; None: off). (default: none)" in ops
    assert "(default: 256,256)" in groups["model options"]
    assert "(default: max-mem)" in groups["spiking-network options"]


def test_flags_take_values_as_the_config_writes_them() -> None:
    """Both list forms, none for an optional value, enums by value, `_` or `-` in a flag."""
    flags = parse_train_flags(["--hidden-sizes", "32,16", "--metrics-port", "none",
                               "--readout", "firing-rate", "--learning_starts", "7"])  # fmt: skip
    assert flags.given == {
        "hidden_sizes": (32, 16), "metrics_port": None, "learning_starts": 7,
        "spiking": {"readout": Readout.FIRING_RATE},
    }  # fmt: skip
    assert parse_train_flags(["--hidden-sizes", "32", "16"]).given["hidden_sizes"] == (32, 16)
    assert parse_train_flags(["--grad-clip", "None"]).given["grad_clip"] is None
    assert parse_train_flags(["--no-bias", "--double-q"]).given == {
        "double_q": True, "spiking": {"bias": False},
    }  # fmt: skip
    # A flag given with its default value is given: it wins over the preset's value.
    cfg = config_from_flags(parse_train_flags(["--preset", "laptop", "--total-steps", "20000000"]))
    assert cfg.total_steps == TrainConfig().total_steps != 60_000


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--lr"], "--lr expects a value (FLOAT)"),
        (["--lr", "fast"], "--lr expects float, got 'fast'"),
        (["--lrr", "3"], "unrecognized arguments: --lrr 3 (did you mean --lr?)"),
        (["--print-config", "yes"], "unrecognized arguments: yes"),
        (
            ["--execution", "fold"],
            "--execution 'fold' is not allowed (did you mean folded?); allowed: auto, reference, "
            "folded",
        ),
    ],
)
def test_every_kind_of_parse_error_is_one_line(
    argv: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", *argv]) == 2
    assert capsys.readouterr().err == f"dsqn: error: {line}; see dsqn train --help\n"


def test_the_effective_config_is_said_at_start(capsys: pytest.CaptureFixture[str]) -> None:
    from dsqn_rllib.cli import _say_config

    cfg = TrainConfig(env="CartPole-v1", total_steps=500).validate()
    _say_config(cfg, None)
    out = capsys.readouterr().out
    assert out.startswith("dsqn: config (the paper's defaults; changed: env=CartPole-v1 ")
    assert "total_steps=500" in out and "--print-config" in out
    assert "dsqn: note: --learning-starts 50,000 >= --total-steps 500" in out
