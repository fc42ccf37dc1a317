"""A Tune grid over ``DSQNConfig``: readout x T x seed, each trial a ``PipelinedDQN``.

    python examples/tune_grid.py                       # CartPole-v1, 2 x 2 x 1 trials
    python examples/tune_grid.py --env pong --steps 20000 --readouts max-mem,mean-mem

Every trial reports RLlib's standard keys (``num_env_steps_sampled_lifetime``,
``env_runners/episode_return_mean``, ``learners/default_policy/qf_loss``, ``evaluation/...``)
plus the pipeline's spiking extras under ``dsqn`` (firing rate per LIF layer, T and readout
of the network the learner built). Tune's stopper reads ``num_env_steps_sampled_lifetime``.
A trial's checkpoint restores with ``Algorithm.from_checkpoint`` and keeps counting.
"""

from __future__ import annotations

import argparse
import tempfile

import ray
from ray import tune

from dsqn_rllib.rllib import DSQNConfig


def build_config(
    env: str, readouts: list[str], Ts: list[int], seeds: list[int], run_root: str
) -> DSQNConfig:
    """The paper's DSQN on ``env`` with a small replay and warm-up, sampled in-process (one
    CPU per trial), the grid in the network options and the seed; each trial recorded in the
    run registry under ``run_root`` (``dsqn runs --run-dir RUN_ROOT`` lists them)."""
    return (
        DSQNConfig()
        .environment(env)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2, create_local_env_runner=True)
        .training(
            lr=1e-3,
            train_batch_size=32,
            num_steps_sampled_before_learning_starts=200,
            target_network_update_freq=200,
            epsilon=[(0, 1.0), (2_000, 0.05)],
        )
        .pipeline(buffer_size=10_000)
        .rl_module(
            model_config={
                "readout": tune.grid_search(readouts),
                "T": tune.grid_search(Ts),
                "hidden_sizes": (64,),
            }
        )
        .evaluation(evaluation_interval=1, evaluation_duration=3)
        .reporting(min_time_s_per_iteration=1.0)
        .debugging(seed=tune.grid_search(seeds))
        .learners(num_cpus_per_learner=1)
        .observability(registry=True, run_root=run_root, sweep="tune-grid")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--steps", type=int, default=1_500, help="env steps per trial")
    parser.add_argument("--readouts", default="max-mem,mean-mem")
    parser.add_argument("--T", default="2,4", help="simulation steps, comma separated")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--storage", default=None, help="Tune's storage path (default: a tmp dir)")
    args = parser.parse_args(argv)
    storage = args.storage or tempfile.mkdtemp(prefix="dsqn-tune-")
    config = build_config(
        args.env,
        args.readouts.split(","),
        [int(t) for t in args.T.split(",")],
        [int(s) for s in args.seeds.split(",")],
        run_root=storage,
    )
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        tuner = tune.Tuner(
            config.algo_class,
            param_space=config,
            run_config=tune.RunConfig(
                storage_path=storage,
                stop={"num_env_steps_sampled_lifetime": args.steps},
                checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True),
                verbose=0,
            ),
        )
        results = tuner.fit()
        print("trial | readout | T | seed | env steps | return (train) | eval return | rates")
        for result in results:
            if result.error:
                print(f"trial failed: {result.error}")
                return 1
            m, dsqn = result.metrics, result.metrics["dsqn"]
            print(
                f"trial | {dsqn['readout']} | {dsqn['T']} | {result.config['seed']} | "
                f"{m['num_env_steps_sampled_lifetime']} | "
                f"{m['env_runners']['episode_return_mean']:.1f} | "
                f"{m.get('evaluation', {}).get('env_runners', {}).get('episode_return_mean')} | "
                f"{dsqn['firing_rates']}"
            )
            print(f"checkpoint | {result.checkpoint.path if result.checkpoint else None}")
    finally:
        if started_ray:
            ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
