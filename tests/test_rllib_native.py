"""``DSQNConfig`` and ``PipelinedDQN`` as RLlib users drive them: defaults, validation before
Ray starts, standard result keys, checkpoints that keep counting, a Tune grid."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import ray
import torch

from dsqn_rllib.config import TrainConfig
from dsqn_rllib.envs.atari import resolve_env
from dsqn_rllib.errors import ConfigError
from dsqn_rllib.rllib.builder import build_algorithm_config
from dsqn_rllib.rllib.config import DSQNConfig

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_are_the_authors_and_the_env_picks_the_network() -> None:
    config = DSQNConfig()
    assert (config.lr, config.adam_epsilon, config.gamma) == (2.5e-4, 1e-8, 0.99)
    assert (config.train_batch_size, config.train_every) == (128, 4)
    assert config.target_network_update_freq == 10_000 and config.warmup_steps == 50_000
    assert config.replay_capacity == 1_000_000 and config.grad_clip is None
    assert config.td_error_loss_fn == "mse" and not config.double_q and config.n_step == 1
    assert config.epsilon_at(0) == 1.0 and config.epsilon_at(500_000) == pytest.approx(0.55)
    assert config.epsilon_at(2_000_000) == pytest.approx(0.1) and config.eval_epsilon == 0.05
    assert config.spiking.T == 8 and config.spiking.readout.value == "max-mem"
    # Atari names of every kind pick the conv DSQN; a vector env the spiking MLP.
    for name in ("pong", "Pong", "ALE/Pong-v5", "ale_py:ALE/Pong-v5", "PongNoFrameskip-v4"):
        assert resolve_env(name) == ("pong", None), name
    assert DSQNConfig().environment("ale_py:ALE/Pong-v5").game == "pong"
    # learner_device "auto": the default config's learner takes this machine's GPU, if any.
    assert DSQNConfig().num_gpus_per_learner == int(torch.cuda.is_available())
    assert DSQNConfig().pipeline(learner_device="cpu").num_gpus_per_learner == 0
    cartpole = DSQNConfig().environment("CartPole-v1")
    assert cartpole.game is None and cartpole.net_options()["hidden_sizes"] == (256, 256)
    assert "hidden_sizes" not in DSQNConfig().net_options()  # the conv stack has none
    # model_config overrides one option and keeps the other defaults.
    tuned = DSQNConfig().rl_module(model_config={"T": 4, "readout": "mean-mem"})
    assert tuned.spiking.T == 4 and tuned.spiking.tau == 2.0
    assert tuned.model_config["net_options"]["readout"].value == "mean-mem"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.training(dueling=True), "dueling heads are not supported"),
        (lambda c: c.training(num_atoms=51), "distributional DQN (num_atoms=51)"),
        (lambda c: c.environment("pongg"), "unknown game 'pongg'"),
        (lambda c: c.environment("ALE/NotAGame-v5"), "unknown game"),
        (lambda c: c.environment("NoSuchEnv-v0"), "unknown env 'NoSuchEnv-v0'"),
        (lambda c: c.rl_module(model_config={"TT": 4}), "unknown model_config option(s) ['TT']"),
        (lambda c: c.rl_module(model_config={"T": 0}), "T (simulation steps)"),
        (lambda c: c.rl_module(model_config={"model": "snn"}), "model must be dsqn or dqn"),
        (lambda c: c.training(lr=-1.0), "lr must be a number > 0.0"),
        (lambda c: c.training(epsilon=[(0, 1.5)]), "epsilon must be a number"),
        (lambda c: c.pipeline(train_every=0), "train_every must be an integer >= 1"),
        (lambda c: c.pipeline(buffer_size=16), "replay_buffer_config['capacity']"),
        (lambda c: c.learners(num_learners=2), "trains with one learner"),
    ],
)
def test_a_bad_option_is_one_line_before_ray_starts(change: object, message: str) -> None:
    config = change(DSQNConfig())  # type: ignore[operator]
    with pytest.raises(ConfigError) as err:
        config.validate()
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not ray.is_initialized()


def test_numpy_counts_are_taken_and_saved_as_plain_numbers() -> None:
    """Counts from gymnasium spaces or numpy grids (``np.int64``) are valid options, and the
    validated configs hold Python numbers (a run's train_config.json is JSON)."""
    import json

    import numpy as np

    rllib_config = (
        DSQNConfig()
        .environment("CartPole-v1")
        .training(train_batch_size=np.int64(32), gamma=np.float32(0.97))
        .pipeline(train_every=np.int64(4))
        .rl_module(model_config={"hidden_sizes": (np.int64(64),), "T": np.int64(4)})
    )
    rllib_config.validate_dsqn()
    assert type(rllib_config.train_batch_size) is int and type(rllib_config.train_every) is int
    cli_config = TrainConfig(
        game="pong", train_batch_size=np.int64(32), envs_per_runner=np.int64(2),
        hidden_sizes=(np.int64(64),), lr=np.float32(1e-4),
    ).validate()  # fmt: skip
    assert type(cli_config.train_batch_size) is int and type(cli_config.hidden_sizes[0]) is int
    assert json.loads(json.dumps(cli_config.to_dict()))["train_batch_size"] == 32
    with pytest.raises(ConfigError, match="train_batch_size must be an integer >= 1"):
        TrainConfig(game="pong", train_batch_size=np.int64(0)).validate()


def test_the_cli_config_is_a_view_of_dsqn_config() -> None:
    """``dsqn train``'s flags land in DSQNConfig's RLlib fields, read by learner and runners."""
    cfg = TrainConfig(
        game="breakout", lr=1e-4, gamma=0.97, train_batch_size=64, train_every=2, n_step=3,
        buffer_size=5_000, learning_starts=700, target_update_period=300, epsilon_start=0.9,
        epsilon_end=0.02, epsilon_decay_steps=1_000, double_q=True, loss="huber",
        eval_interval=5_000, eval_episodes=7, eval_epsilon=0.01,
    ).with_spiking(T=4, readout="last-mem").validate()  # fmt: skip
    config = build_algorithm_config(cfg)
    assert isinstance(config, DSQNConfig) and config.game == "breakout"
    assert (config.lr, config.gamma, config.train_batch_size) == (1e-4, 0.97, 64)
    assert (config.train_every, config.n_step, config.replay_capacity) == (2, 3, 5_000)
    assert (config.warmup_steps, config.target_network_update_freq) == (700, 300)
    assert config.epsilon_at(0) == 0.9 and config.epsilon_at(1_000) == pytest.approx(0.02)
    assert config.double_q and config.td_error_loss_fn == "huber"
    assert config.spiking.T == 4 and config.spiking.readout.value == "last-mem"
    # The paper's protocol every 5,000 env steps, 7 games at ε 0.01, beside training.
    assert (config.evaluation_interval_env_steps, config.evaluation_duration) == (5_000, 7)
    assert config.eval_epsilon == 0.01 and config.evaluation_parallel_to_training


@pytest.fixture
def local_ray() -> object:
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _cartpole() -> DSQNConfig:
    return (
        DSQNConfig()
        .environment("CartPole-v1")
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2, create_local_env_runner=True)
        .training(
            lr=1e-3,
            train_batch_size=32,
            num_steps_sampled_before_learning_starts=200,
            epsilon=[(0, 1.0), (2_000, 0.1)],
        )
        .pipeline(buffer_size=5_000)
        .rl_module(model_config={"T": 2, "hidden_sizes": (32,)})
        .reporting(min_time_s_per_iteration=0.5)
        .evaluation(evaluation_interval=2, evaluation_duration=4)
        .debugging(seed=3)
    )


def test_standard_keys_evaluation_and_a_checkpoint_that_keeps_counting(
    local_ray: object, tmp_path: Path
) -> None:
    from ray.rllib.algorithms.algorithm import Algorithm

    algo = _cartpole().build_algo()
    try:
        learner_lr = [
            r.get()
            for r in algo.learner_group.foreach_learner(
                lambda learner: learner.get_optimizer().param_groups[0]["lr"]
            )
        ]
        assert learner_lr == [1e-3]  # .training(lr=...) reached the learner's Adam
        # Iterations last 0.5 s: on a busy machine two may not reach learning (200 steps), so
        # train on in pairs (evaluation_interval 2) until updates have been made.
        results = [algo.train() for _ in range(2)]
        while results[-1]["dsqn"]["updates"] == 0 and len(results) < 20:
            results += [algo.train() for _ in range(2)]
        last = results[-1]
        assert last["num_env_steps_sampled_lifetime"] == last["dsqn"]["env_steps"] > 200
        runners = last["env_runners"]
        assert runners["num_env_steps_sampled_lifetime"] == last["num_env_steps_sampled_lifetime"]
        assert 5 < runners["episode_return_mean"] < 200  # CartPole episodes were played
        assert last["dsqn"]["updates"] > 0 and last["dsqn"]["network"] == "SpikingMLP"
        assert set(last["dsqn"]["firing_rates"]) == {"fc1"}  # per LIF layer, measured on acting
        assert last["learners"]["default_policy"]["qf_loss"] > 0
        evaluation = last["evaluation"]["env_runners"]  # the paper's protocol, 4 episodes
        assert evaluation["num_episodes"] == 4 and len(evaluation["episode_returns"]) == 4
        assert evaluation["episode_return_mean"] == pytest.approx(
            sum(evaluation["episode_returns"]) / 4
        )
        saved = algo.get_pipeline_state()
        weights = algo.online_network().state_dict()
        algo.save_to_path(str(tmp_path / "ckpt"))
    finally:
        algo.stop()

    restored = Algorithm.from_checkpoint(str(tmp_path / "ckpt"))
    try:
        assert type(restored).__name__ == "PipelinedDQN"
        state = restored.get_pipeline_state()
        for key in ("env_steps", "updates", "episodes", "target_syncs", "epsilon"):
            assert state[key] == saved[key], key
        for name, tensor in restored.online_network().state_dict().items():
            torch.testing.assert_close(tensor, weights[name])
        again = restored.train()
        assert again["num_env_steps_sampled_lifetime"] > saved["env_steps"]
        assert again["dsqn"]["epsilon"] < 1.0  # ε continues from the step count, not 1.0
    finally:
        restored.stop()


def test_evaluation_every_n_env_steps_runs_beside_training(local_ray: object) -> None:
    """``evaluation_parallel_to_training``: the paper's protocol runs in a Ray task (on a CPU
    the trial reserves) on the weights of the step it was due at; training goes on, and a
    later iteration reports it with RLlib's keys."""
    config = _cartpole().evaluation(
        evaluation_interval=None,
        evaluation_interval_env_steps=300,
        evaluation_duration=50,
        evaluation_parallel_to_training=True,
    )
    config.validate()
    algo_class = config.algo_class
    assert algo_class.default_resource_request(config).bundles[-1] == {"CPU": 1.0}
    serial = _cartpole().evaluation(evaluation_interval=None, evaluation_interval_env_steps=300)
    assert {"CPU": 1.0} not in algo_class.default_resource_request(serial).bundles[1:]
    algo = config.build_algo()
    try:
        reported: list[tuple[int, dict]] = []
        for _ in range(60):
            result = algo.train()
            if "evaluation" in result:
                reported.append((result["dsqn"]["env_steps"], result["evaluation"]["env_runners"]))
            if len(reported) == 2:
                break
        assert len(reported) == 2, reported
        (first_seen, first), (_, second) = reported
        assert 300 <= first["env_steps_at_evaluation"] < first_seen  # trained on meanwhile
        assert second["env_steps_at_evaluation"] >= 600  # the next multiple of the interval
        assert first["num_episodes"] == len(first["episode_returns"]) == 50
        assert first["episode_return_mean"] == pytest.approx(sum(first["episode_returns"]) / 50)
        assert algo.last_evaluation is not None and algo.last_evaluation.weights
    finally:
        algo.stop()


@pytest.mark.slow
def test_tune_grid_over_readout_and_T_reports_standard_keys(tmp_path: Path) -> None:
    """examples/tune_grid.py: 2 readouts x 2 T on CartPole; every grid point reaches the
    network the learner built, and every trial reaches the stopper's env-step budget."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "tune_grid.py"), "--steps", "600",
         "--storage", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line.split(" | ") for line in proc.stdout.splitlines() if line.startswith("trial | ")]
    trials = rows[1:]  # after the header
    assert {(r[1], r[2]) for r in trials} == {
        ("max-mem", "2"), ("max-mem", "4"), ("mean-mem", "2"), ("mean-mem", "4"),
    }  # fmt: skip
    assert all(int(r[4]) >= 600 for r in trials)
    checkpoints = re.findall(r"^checkpoint \| (\S+)$", proc.stdout, re.M)
    assert len(checkpoints) == 4 and all(Path(c).is_dir() for c in checkpoints)
    # Every trial is in the run registry (RunObserver), with its sweep and grid point.
    from dsqn_rllib.ops.registry import RegistryConfig, open_registry

    runs = open_registry(RegistryConfig.resolve(None, "dsqn", run_root=tmp_path)).list_runs()
    assert len(runs) == 4 and {r.status for r in runs} == {"finished"}
    assert {(r.config["network"]["readout"], r.config["network"]["T"]) for r in runs} == {
        ("max-mem", 2), ("max-mem", 4), ("mean-mem", 2), ("mean-mem", 4),
    }  # fmt: skip
    assert all(r.config["sweep"] == "tune-grid" and r.env_steps >= 600 for r in runs)
    # `dsqn compare`'s rows: one per grid point, each the best of its run's own evaluations.
    from dsqn_rllib.evaluation.compare import compare, scores_from_registry

    registry = open_registry(RegistryConfig.resolve(None, "dsqn", run_root=tmp_path))
    rows = compare(scores_from_registry(registry, sweep="tune-grid"))
    assert [(r.readout, r.T, r.n) for r in rows] == [
        ("max-mem", 2, 1), ("max-mem", 4, 1), ("mean-mem", 2, 1), ("mean-mem", 4, 1),
    ]  # fmt: skip
    best = {
        (r.config["network"]["readout"], r.config["network"]["T"]): max(
            e["mean"] for e in registry.evaluations(r.run_id)
        )
        for r in runs
    }
    assert all(row.mean == best[(row.readout, row.T)] for row in rows)
    # TensorBoard: each trial's reports at env steps in <trial dir>/dsqn (RunObserver), with
    # its evaluations; beside Tune's own per-iteration events.
    from dsqn_rllib.ops.tensorboard import read_scalars

    logdirs = sorted(d for d in tmp_path.rglob("dsqn") if d.is_dir())
    assert len(logdirs) == 4, logdirs
    for logdir in logdirs:
        scalars = read_scalars(logdir)
        steps = [step for step, _ in scalars["charts/epsilon"]]
        assert steps == sorted(steps) and steps[-1] >= 600
        assert scalars["eval/return_mean"]


def test_the_run_observer_keeps_registry_metrics_and_guard_without_our_driver(
    local_ray: object, tmp_path: Path
) -> None:
    """What the CLI's driver does, as an RLlibCallback: so it also runs under tune.Tuner. A net
    that cannot fire (V_th far above any current) is flagged after 1 update of patience."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from dsqn_rllib.ops.registry import RegistryConfig, RunStatus, open_registry

    config = (
        _cartpole()
        .rl_module(model_config={"T": 2, "hidden_sizes": (32,), "v_threshold": 1e6})
        .pipeline(silent_layer_patience=1)
        .observability(
            registry=True, run_root=str(tmp_path), run_id="observed", sweep="s1", metrics_port=0
        )
    )
    algo = config.build_algo()
    observer = algo.callbacks[0] if isinstance(algo.callbacks, list) else algo.callbacks
    try:
        results = [algo.train() for _ in range(3)]
        report = results[-1]["dsqn"]
        assert report["silent_layers"] == ["fc1"] and "fc1 fired no spike" in report["warning"]
        assert 0 < report["energy_pj_per_inference"] < report["dqn_twin_energy_pj_per_inference"]
        url = f"http://127.0.0.1:{observer.exporter.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        samples = {
            (s.name, s.labels.get("layer")): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.labels.get("run_id") == "observed"
        }
        assert ("dsqn_env_steps_total", None) in samples, text[:3000]
        assert samples[("dsqn_env_steps_total", None)] == report["env_steps"]
        assert samples[("dsqn_silent_layers", None)] == 1
        # A sweep's trials are told apart by their labels (sweep, seed) as well as run_id.
        families = text_string_to_metric_families(text)
        steps = next(s for f in families for s in f.samples if s.name == "dsqn_env_steps_total")
        assert {k: steps.labels[k] for k in ("sweep", "seed", "game", "model")} == {
            "sweep": "s1", "seed": str(config.seed or 0), "game": "CartPole-v1", "model": "dsqn",
        }  # fmt: skip
        assert samples[("dsqn_eval_return_mean", None)] > 0  # the iteration-2 evaluation
        registry = open_registry(RegistryConfig.resolve(None, "dsqn", run_root=tmp_path))
        record = registry.get_run("observed")
        assert record is not None and record.status == RunStatus.RUNNING.value
        assert record.env_steps == report["env_steps"] and "fc1" in (record.warning or "")
        assert record.config["sweep"] == "s1" and record.config["network"]["v_threshold"] == 1e6
        (evaluation,) = registry.evaluations("observed")
        assert evaluation["episodes"] == 4 and evaluation["mean"] == pytest.approx(
            results[1]["evaluation"]["env_runners"]["episode_return_mean"]
        )
    finally:
        algo.stop()
    assert registry.get_run("observed").status == RunStatus.FINISHED.value


def test_the_cli_config_holds_dsqn_configs_defaults_and_checks() -> None:
    """``TrainConfig`` (``dsqn train``'s flags) holds DSQNConfig's defaults, and its checks
    are DSQNConfig's (``validate_dsqn``), in the CLI's words."""
    from dsqn_rllib.config import CLI_NAMES

    view, paper = TrainConfig().validate().to_dsqn_config(), DSQNConfig()
    for name in (
        "env", "lr", "adam_epsilon", "gamma", "train_batch_size", "target_network_update_freq",
        "num_steps_sampled_before_learning_starts", "epsilon", "td_error_loss_fn", "grad_clip",
        "double_q", "n_step", "replay_buffer_config", "train_every", "sticky_actions",
        "max_episode_frames", "silent_layer_patience", "learner_device", "num_env_runners",
        "num_envs_per_env_runner", "evaluation_duration", "eval_epsilon", "network",
    ):  # fmt: skip
        assert getattr(view, name) == getattr(paper, name), name
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(CLI_NAMES.values()) <= fields
    bad = {
        "learning_starts": -1, "target_update_period": 0, "buffer_size": 1, "envs_per_runner": 0,
        "eval_epsilon": 2.0, "eval_interval": -1, "eval_episodes": 0, "loss": "l1",
        "adam_eps": 0.0, "lr": -1.0, "n_step": 0, "hidden_sizes": (0,), "model": "snn",
    }  # fmt: skip
    for name, value in bad.items():
        with pytest.raises(ConfigError) as err:
            TrainConfig(env="CartPole-v1", **{name: value}).validate()
        assert str(err.value).startswith(f"{name} must be "), (name, str(err.value))
