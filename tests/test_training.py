"""End to end through real Ray, RLlib and ale-py: the CLI as a user types it, fault tolerance,
and proof that the spiking network learns."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import ray
import torch
from prometheus_client.parser import text_string_to_metric_families
from ray.rllib.core import DEFAULT_MODULE_ID

from dsqn_rllib.config import TrainConfig
from dsqn_rllib.evaluation.protocol import EvalConfig, evaluate
from dsqn_rllib.ops.checkpoints import load_network
from dsqn_rllib.snn.networks import build_q_network

pytestmark = pytest.mark.slow


def atari_smoke(runners: int, envs: int) -> list[str]:
    """Tiny Atari budgets: a few hundred agent steps, a small replay, a short simulation."""
    return [
        "--game", "pong", "--T", "2", "--num-env-runners", str(runners),
        "--envs-per-runner", str(envs), "--total-steps", "640", "--learning-starts", "256",
        "--train-batch-size", "8", "--train-every", "8", "--buffer-size", "4000",
        "--target-update-period", "200", "--eval-interval", "0", "--checkpoint-interval", "320",
    ]  # fmt: skip


def dsqn(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run the ``dsqn`` command as a user would (its own process, its own Ray)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_DEDUP_LOGS": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "dsqn_rllib.cli", *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, (
        f"dsqn {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )
    return proc


def progress_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "checkpoints" / "latest" / "progress.json").read_text())


def test_atari_train_checkpoint_eval_and_resume_on_the_new_stack(tmp_path: Path) -> None:
    out = dsqn("train", *atari_smoke(2, 2), "--run-dir", str(tmp_path), "--run-id", "pong-new")
    run = tmp_path / "pong-new"
    assert "done:" in out.stdout
    progress = progress_of(run)
    assert progress["env_steps"] >= 640 and progress["updates"] > 0
    assert progress["obs_shape"] == [4, 84, 84] and progress["num_actions"] == 6
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["replay_size"] > 0 and lines[-1]["healthy_runners"] == 2
    assert set(lines[-1]["firing_rates"]) == {"conv1", "conv2", "conv3", "fc"}
    assert len(lines[-1]["steps_per_runner"]) == 2, "both env runners must have sampled"

    out = dsqn("report", str(run))
    for name in ("returns.png", "firing_rates.png", "throughput.png"):
        assert (run / name).stat().st_size > 1000 and name in out.stdout

    gif = tmp_path / "episode.gif"
    out = dsqn(
        "eval", str(run), "--episodes", "2", "--max-episode-frames", "800", "--gif", str(gif)
    )
    assert "mean" in out.stdout and "over 2 episodes" in out.stdout
    assert gif.stat().st_size > 0

    # Resume by checkpoint: the step count continues from the checkpoint, not from zero.
    before = progress["env_steps"]  # iterations overshoot total_steps: resume past it
    dsqn("train", "--resume", str(run), "--total-steps", str(before + 400))
    after = progress_of(run)
    assert after["env_steps"] >= before + 400
    resumed = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()][
        len(lines) :
    ]
    assert resumed and min(r["env_steps"] for r in resumed) >= before
    assert resumed[-1]["env_steps"] > before


def test_atari_in_process_sampling_trains_at_the_exact_ratio_and_resumes(tmp_path: Path) -> None:
    """--num-env-runners 0: the learner's process steps the envs between its updates."""
    dsqn("train", *atari_smoke(0, 4), "--run-dir", str(tmp_path), "--run-id", "pong-local")
    run = tmp_path / "pong-local"
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    last = lines[-1]
    assert last["env_steps"] >= 640 and last["healthy_runners"] == 1  # the in-process runner
    assert last["steps_per_runner"] == {"0": last["env_steps"]}  # no actor sampled
    assert set(last["firing_rates"]) == {"conv1", "conv2", "conv3", "fc"}
    for line in lines:  # learning_starts 256, one update per 8 env steps, the replay ratio
        if line["env_steps"] >= 256 + 8:  # held to the last chunk (its update runs as the
            due = (line["env_steps"] - 256) // 8 + 1  # next chunk's envs step)
            assert due - 1 <= line["updates"] <= due, line
    before = progress_of(run)["env_steps"]
    dsqn("train", "--resume", str(run), "--total-steps", str(before + 400))
    assert progress_of(run)["env_steps"] >= before + 400


def test_atari_train_and_eval_on_the_old_stack_torch_model_v2(tmp_path: Path) -> None:
    # One runner with one env: the old stack's sampling is RLlib's own (slow) path.
    dsqn(
        "train",
        *atari_smoke(1, 1),
        "--api-stack",
        "old",
        "--run-dir",
        str(tmp_path),
        "--run-id",
        "pong-old",
    )
    run = tmp_path / "pong-old"
    progress = progress_of(run)
    assert progress["env_steps"] >= 640
    assert (run / "checkpoints" / "latest" / "algorithm").is_dir()
    net, cfg, _ = load_network(run)
    assert cfg.api_stack.value == "old" and net.is_spiking and net.T == 2
    out = dsqn("eval", str(run), "--episodes", "1", "--max-episode-frames", "400")
    assert "over 1 episodes" in out.stdout


@pytest.fixture
def local_ray() -> object:
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_a_killed_env_runner_is_restarted_and_training_goes_on(local_ray: object) -> None:
    from dsqn_rllib.rllib.builder import build_algorithm_config

    cfg = TrainConfig(
        env="CartPole-v1", num_env_runners=2, envs_per_runner=2, learning_starts=64,
        train_batch_size=16, train_every=4, buffer_size=5000, hidden_sizes=(16, 16),
        adam_eps=1e-6,  # not torch's default: the learner must read the configured one
    ).with_spiking(T=2).validate()  # fmt: skip
    algo = build_algorithm_config(cfg, iteration_seconds=1.0).build_algo()
    try:
        # The learner's Adam is the configured one (RLlib's default learner ignores
        # adam_epsilon on this stack), with the fused kernel, and gradients are not clipped
        # (DQNConfig's default would clip their norm at 40; the paper does not clip).
        (adam,) = _on_learner(
            algo,
            lambda learner: dict(
                learner.get_optimizer().param_groups[0], grad_clip=learner.config.grad_clip
            ),
        )
        assert adam["eps"] == cfg.adam_eps != 1e-8 and adam["fused"] and adam["lr"] == cfg.lr
        assert adam["grad_clip"] is None
        for _ in range(3):
            report = algo.train()["dsqn"]
        assert report["healthy_runners"] == 2
        pids = algo.env_runner_group.foreach_env_runner(
            lambda runner: os.getpid(), local_env_runner=False
        )
        os.kill(pids[0], signal.SIGKILL)  # a real crash, not a polite stop
        steps_at_kill = report["env_steps"]
        restarted = False
        deadline = time.time() + 180
        while time.time() < deadline:
            report = algo.train()["dsqn"]
            if report["runner_restarts"] >= 1 and report["healthy_runners"] == 2:
                restarted = True
                break
        assert restarted, f"runner not restarted: {report}"
        steps_after_restart = report["env_steps"]
        for _ in range(3):
            report = algo.train()["dsqn"]
        assert report["env_steps"] > steps_after_restart > steps_at_kill
        new_pids = algo.env_runner_group.foreach_env_runner(
            lambda runner: os.getpid(), local_env_runner=False
        )
        assert pids[0] not in new_pids and len(new_pids) == 2

        # An update whose gradient is not finite (NaN rewards in the replay) is skipped whole
        # and counted; the next good one steps.
        def weights(learner: object) -> list:
            return [p.detach().clone() for p in learner.module[DEFAULT_MODULE_ID].parameters()]

        (before,) = _on_learner(algo, weights)
        good_rewards = algo.replay.rewards.copy()
        algo.replay.rewards[:] = float("nan")
        algo._learn(num_updates=1)
        (after,) = _on_learner(algo, weights)
        assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
        assert algo.pipeline_report()["nonfinite_grad_skips"] == 1
        algo.replay.rewards[:] = good_rewards
        algo._learn(num_updates=1)
        (after,) = _on_learner(algo, weights)
        assert not all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
        assert algo.pipeline_report()["nonfinite_grad_skips"] == 1

        # Several updates in one learner call are that many Adam steps on batches of
        # train_batch_size (RLlib's minibatches), not one step on a bigger batch.
        def adam_steps(learner: object) -> int:
            optimizer = learner.get_optimizer()
            return int(optimizer.state[optimizer.param_groups[0]["params"][0]]["step"])

        (steps_before,) = _on_learner(algo, adam_steps)
        updates_before = algo.pipeline_report()["updates"]
        algo._learn(num_updates=3)
        assert _on_learner(algo, adam_steps) == [steps_before + 3]
        assert algo.pipeline_report()["updates"] == updates_before + 3
    finally:
        algo.stop()


def test_the_lean_learner_path_is_rllibs_update_and_loss(local_ray: object) -> None:
    """``FusedAdamDQNLearner`` skips RLlib's general-purpose update machinery and its DQN
    loss's td-error series for speed; the parameters it trains to must be RLlib's own."""
    import copy
    import functools

    from ray.rllib.algorithms.dqn.dqn_learner import (
        QF_NEXT_PREDS,
        QF_PREDS,
        QF_TARGET_NEXT_PREDS,
    )
    from ray.rllib.algorithms.dqn.torch.dqn_torch_learner import DQNTorchLearner
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.learner.learner import Learner
    from ray.rllib.core.learner.training_data import TrainingData
    from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME

    from dsqn_rllib.rllib.builder import build_algorithm_config

    cfg = TrainConfig(
        env="CartPole-v1", num_env_runners=0, envs_per_runner=2, learning_starts=64,
        train_batch_size=16, train_every=4, buffer_size=5000, hidden_sizes=(16, 16),
        target_update_period=32,
    ).with_spiking(T=2).validate()  # fmt: skip
    algo = build_algorithm_config(cfg, iteration_seconds=0.5).build_algo()
    try:
        while algo.pipeline_report()["updates"] < 3:
            algo.train()
        batch = algo.replay_batch(3 * cfg.train_batch_size)
        # Timesteps past the target period: the after-update hook must sync the target.
        timesteps = {NUM_ENV_STEPS_SAMPLED_LIFETIME: algo.pipeline_report()["env_steps"] + 64}

        def lean_then_rllib(learner: object) -> dict:
            module = learner.module[DEFAULT_MODULE_ID]
            optimizer = learner.get_optimizer()
            start = (copy.deepcopy(module.state_dict()), copy.deepcopy(optimizer.state_dict()))
            last_sync = dict(learner.last_update_ts_by_mid)
            out = {}
            for path in ("lean", "rllib"):
                module.load_state_dict(start[0])
                # A copy: Adam adopts the loaded step tensors and counts on in them.
                optimizer.load_state_dict(copy.deepcopy(start[1]))
                learner.last_update_ts_by_mid.update(last_sync)
                kwargs = dict(
                    training_data=TrainingData(batch=batch),
                    timesteps=timesteps,
                    minibatch_size=cfg.train_batch_size,
                )
                if path == "lean":
                    results = learner.update(**kwargs)
                else:  # RLlib's update loop with RLlib's DQN loss
                    learner.compute_loss_for_module = functools.partial(
                        DQNTorchLearner.compute_loss_for_module, learner
                    )
                    try:
                        results = Learner.update(learner, **kwargs)
                    finally:
                        del learner.compute_loss_for_module
                mid = results[DEFAULT_MODULE_ID]
                out[path] = {
                    "state": copy.deepcopy(module.state_dict()),
                    "adam_step": max(s["step"].item() for s in optimizer.state.values()),
                    "qf_loss": float(mid["qf_loss"].peek()),
                    "syncs": mid["num_target_updates"].peek(),
                }
            return out

        (out,) = _on_learner(algo, lean_then_rllib)
        lean, rllib = out["lean"], out["rllib"]
        assert lean["adam_step"] == rllib["adam_step"] and lean["syncs"] == rllib["syncs"] >= 1
        assert lean["qf_loss"] == pytest.approx(rllib["qf_loss"], rel=1e-6)
        assert lean["state"].keys() == rllib["state"].keys()
        for key in lean["state"]:
            torch.testing.assert_close(lean["state"][key], rllib["state"][key])
        # ...and the target net moved to the trained weights (the sync ran after the steps).
        target_keys = [k for k in lean["state"] if k.startswith("_target_net.")]
        assert target_keys
        for key in target_keys:
            online = key.replace("_target_net.", "net.", 1)
            torch.testing.assert_close(lean["state"][key], lean["state"][online])

        # The loss alone, on every variant the lean loss serves: the same value and gradient.
        def losses(learner: object) -> list:
            torch.manual_seed(0)
            B, A = 8, 3
            data = {
                Columns.ACTIONS: torch.randint(0, A, (B,)),
                Columns.REWARDS: torch.randn(B),
                Columns.TERMINATEDS: torch.rand(B) < 0.3,
                "n_step": torch.randint(1, 4, (B,)),
                "weights": torch.rand(B),
            }
            preds, next_q, target_q = torch.randn(3, B, A).unbind()
            rows = []
            for double_q in (False, True):
                for loss_fn in ("mse", "huber"):
                    config = learner.config.copy(copy_frozen=False)
                    config.double_q, config.td_error_loss_fn = double_q, loss_fn
                    values = []
                    for compute in (
                        learner.compute_loss_for_module,
                        functools.partial(DQNTorchLearner.compute_loss_for_module, learner),
                    ):
                        q = preds.clone().requires_grad_(True)
                        fwd = {QF_PREDS: q, QF_NEXT_PREDS: next_q, QF_TARGET_NEXT_PREDS: target_q}
                        loss = compute(
                            module_id=DEFAULT_MODULE_ID, config=config, batch=data, fwd_out=fwd
                        )
                        (grad,) = torch.autograd.grad(loss, q)
                        values.append((loss.detach(), grad))
                    rows.append((double_q, loss_fn, values))
            return rows

        (rows,) = _on_learner(algo, losses)
        for double_q, loss_fn, ((lean_loss, lean_grad), (ref_loss, ref_grad)) in rows:
            torch.testing.assert_close(lean_loss, ref_loss, msg=f"{double_q=} {loss_fn=}")
            torch.testing.assert_close(lean_grad, ref_grad, msg=f"{double_q=} {loss_fn=}")
        # The variants differ from one another: the comparison is not of constants.
        assert len({round(float(v[0][0]), 6) for *_, v in rows}) == 4
    finally:
        algo.stop()


def _on_learner(algo: object, fn: object) -> list:
    """``fn(learner)`` on each learner of the algorithm (here: the one local learner)."""
    return [result.get() for result in algo.learner_group.foreach_learner(fn)]


def test_spiking_mlp_learns_cartpole_through_the_full_pipeline(tmp_path: Path) -> None:
    """Evaluation return rises from the random level (~20) to >= 150 (fixed seed)."""
    cfg = TrainConfig(
        env="CartPole-v1", model="dsqn", seed=0, num_env_runners=1, envs_per_runner=4,
        hidden_sizes=(128, 128), lr=1e-3, train_batch_size=64, train_every=2, buffer_size=50_000,
        learning_starts=1000, target_update_period=500, epsilon_decay_steps=5000, epsilon_end=0.02,
        eval_interval=2500, eval_episodes=10, eval_epsilon=0.0, checkpoint_interval=0,
        total_steps=40_000, stop_eval_return=150.0, run_dir=str(tmp_path), run_id="cartpole",
        metrics_port=0,
    ).with_spiking(T=4)  # fmt: skip
    untrained = build_q_network("dsqn", (4,), 2, **cfg.model_options())
    random_level = evaluate(untrained, "CartPole-v1", EvalConfig(episodes=10, epsilon=0.0, seed=1))
    assert random_level.mean < 50

    from dsqn_rllib.run import Trainer

    scrapes: list[str] = []
    endpoint: list[str] = []

    def progress(line: str) -> None:
        """Scrape the run's Prometheus endpoint over HTTP after every progress line."""
        print(line)
        if "metrics at http://" in line:
            endpoint.append(line.split("metrics at ")[1].strip())
        elif endpoint:
            with urllib.request.urlopen(endpoint[0], timeout=10) as response:
                scrapes.append(response.read().decode())

    summary = Trainer(cfg, out=progress).run()
    ray.shutdown()
    assert endpoint and endpoint[0].startswith("http://127.0.0.1:")
    samples = [s for f in text_string_to_metric_families(scrapes[-1]) for s in f.samples]
    labels = {"run_id": "cartpole", "game": "CartPole-v1", "model": "dsqn", "readout": "max-mem",
              "sweep": "", "seed": "0"}  # fmt: skip

    def value(name: str, **extra: str) -> float:
        return next(s.value for s in samples if s.name == name and s.labels == {**labels, **extra})

    last = [
        json.loads(x) for x in (tmp_path / "cartpole" / "metrics.jsonl").read_text().splitlines()
    ]
    scraped_steps = value("dsqn_env_steps_total")
    assert scraped_steps in {r["env_steps"] for r in last}  # a value the run really reported
    assert value("dsqn_learner_updates_total") > 0 and value("dsqn_epsilon") < 1.0
    assert value("dsqn_nonfinite_grad_skips_total") == 0  # a healthy run skips no update
    # A target sync once 500 env steps have passed since the last one, from 1,000 steps on;
    # env steps arrive in chunks of up to 4 envs x 32 steps, so an interval is 500..628.
    since_start = scraped_steps - 1000
    assert since_start // 628 <= value("dsqn_target_syncs_total") <= since_start // 500 + 1
    assert 0 < value("dsqn_firing_rate", layer="fc1") < 1 and value("dsqn_spikes_per_inference") > 0
    assert value("dsqn_energy_per_inference_joules") < value(
        "dsqn_dqn_twin_energy_per_inference_joules"
    )
    assert (
        value("dsqn_runner_env_steps_total", runner="1") == scraped_steps
    )  # one runner did it all
    names = {s.name for s in samples}
    promtool = shutil.which("promtool")  # scripts/test.sh installs it (Debian's prometheus)
    if promtool is not None:
        lint = subprocess.run(
            [promtool, "check", "metrics"], input=scrapes[-1], capture_output=True, text=True
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr
    assert {"dsqn_eval_return_mean", "dsqn_td_loss", "dsqn_replay_occupancy_ratio"} <= names
    assert summary.best_eval_return >= 150, [e["mean"] for e in summary.evaluations]
    net, _, _ = load_network(tmp_path / "cartpole" / "checkpoints" / "best")
    again = evaluate(net, "CartPole-v1", EvalConfig(episodes=10, epsilon=0.0, seed=1000003))
    assert again.mean >= 150


@pytest.mark.slow
def test_an_evaluation_due_while_one_runs_waits_for_it_and_none_is_lost(tmp_path: Path) -> None:
    """Evaluations (3,000 episodes each) take longer than a 2 s iteration of training: a due
    one waits for the running one (said once per wait), starts when it ends, and is recorded."""
    proc = dsqn(
        "train", "--env", "CartPole-v1", "--num-env-runners", "0", "--envs-per-runner", "2",
        "--hidden-sizes", "32,32", "--T", "2", "--train-batch-size", "16", "--train-every", "16",
        "--buffer-size", "5000", "--learning-starts", "300", "--target-update-period", "500",
        "--eval-interval", "100", "--eval-episodes", "3000", "--eval-epsilon", "0",
        "--total-steps", "20000", "--run-dir", str(tmp_path), "--run-id", "ev",
    )  # fmt: skip
    said = [
        line for line in (proc.stdout + proc.stderr).splitlines() if "waits for the one of" in line
    ]
    records = (tmp_path / "ev" / "evaluations.jsonl").read_text().splitlines()
    steps = [json.loads(line)["env_steps"] for line in records]
    assert said, proc.stdout[-3000:]
    assert steps == sorted(set(steps)) and len(steps) >= 2
    for line in said:
        found = re.search(r"due at ([\d,]+) steps waits for the one of ([\d,]+) steps", line)
        assert found, line
        due, running = (int(g.replace(",", "")) for g in found.groups())
        assert running in steps and running < due  # the one it waited for was recorded
        assert any(s >= due for s in steps)  # and the due one ran after it
