"""A sweep on Tune at CartPole size: 2 networks x 2 seeds, recorded, compared, resumable."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsqn_rllib.errors import ConfigError
from dsqn_rllib.rllib.config import DSQNConfig
from dsqn_rllib.rllib.sweep import PRESETS, SweepPlan, run_sweep, sweep_config


def _base() -> DSQNConfig:
    return (
        DSQNConfig()
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2, create_local_env_runner=True)
        .training(
            lr=1e-3,
            train_batch_size=32,
            num_steps_sampled_before_learning_starts=200,
            epsilon=[(0, 1.0), (2_000, 0.05)],
        )
        .pipeline(buffer_size=5_000)
        .reporting(min_time_s_per_iteration=0.5)
        .learners(num_cpus_per_learner=1)
    )


def test_presets_plan_the_papers_experiments() -> None:
    paper = PRESETS["paper-17"]
    assert paper.num_trials == 17 * 2 and paper.total_steps == 20_000_000
    ablation = PRESETS["readout-ablation"]
    assert [n["readout"] for n in ablation.networks()] == [
        "last-mem", "max-mem", "mean-mem", "firing-rate",
    ]  # fmt: skip
    assert ablation.num_trials == 12 and "12 trials" in ablation.describe()
    # The DQN twin is one variant, not one per readout.
    plan = SweepPlan("p", models=["dsqn", "dqn"], readouts=["max-mem", "mean-mem"], Ts=[4, 8])
    assert len(plan.networks()) == 5 and "not measured" in plan.describe()


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (SweepPlan("x", envs=["pongg"]), "unknown env 'pongg'"),
        (SweepPlan("x", readouts=["top-mem"]), "readout"),
        (SweepPlan("x", Ts=[0]), "T (simulation steps)"),
        (SweepPlan("x", seeds=[-1]), "seeds must be integers >= 0"),
    ],
)
def test_a_bad_grid_point_is_one_line_before_ray_starts(plan: SweepPlan, message: str) -> None:
    import ray

    with pytest.raises((ConfigError, ValueError)) as err:
        sweep_config(plan, _base(), "runs")
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not ray.is_initialized()


@pytest.mark.slow
def test_a_2x2_sweep_completes_is_recorded_compared_and_restores(tmp_path: Path) -> None:
    import ray

    from dsqn_rllib.evaluation.compare import compare, scores_from_registry
    from dsqn_rllib.ops.registry import RegistryConfig, open_registry

    plan = SweepPlan(
        "cp", envs=["CartPole-v1"], models=["dsqn", "dqn"], Ts=[2], seeds=[0, 1],
        total_steps=800, evaluation_interval=1,
    )  # fmt: skip
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        results = run_sweep(plan, _base(), tmp_path, verbose=0)
        assert len(results) == 4 and not results.errors
        assert all(r.metrics["num_env_steps_sampled_lifetime"] >= 800 for r in results)
        registry = open_registry(RegistryConfig.resolve(None, "dsqn", run_root=tmp_path))
        runs = registry.list_runs()
        assert len(runs) == 4 and {r.status for r in runs} == {"finished"}
        assert all(r.run_id.startswith("cp-") for r in runs)
        rows = compare(scores_from_registry(registry, sweep="cp"))
        assert [(r.model, r.n) for r in rows] == [("dqn", 2), ("dsqn", 2)]
        dsqn = rows[1]
        assert dsqn.vs_dqn == pytest.approx(dsqn.mean - rows[0].mean)
        # The driver comes back: Tune restores the finished experiment instead of rerunning it.
        again = run_sweep(plan, _base(), tmp_path, verbose=0)
        assert len(again) == 4 and len(registry.list_runs()) == 4
    finally:
        ray.shutdown()
