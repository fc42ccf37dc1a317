"""What the paper's evaluation costs training, in the iteration vs beside it, side by side:

* ``in-iteration`` (``evaluation_parallel_to_training=False``, what a Tune sweep uses): the
  iteration that is due evaluates in the learner's process; training waits for it;
* ``beside`` (``True``, what ``dsqn train`` uses): a Ray task evaluates a frozen copy of the
  weights on another CPU while training goes on.

Both algorithms (same env, model, seed, schedule) stay alive and train in alternating windows
of ``--seconds`` wall time, ``--rounds`` times (these machines are noisy). A ``beside`` window
also waits, at its end, for an evaluation still running, so its time is counted: both report
env steps and updates per second of wall time, and the evaluations finished. Prints each
round's rates and the median ratio beside / in-iteration.

    python benchmarks/bench_evaluation.py                       # Pong, the DQN twin, 2 cores
    python benchmarks/bench_evaluation.py --game breakout --model dsqn --eval-episodes 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import ray

from dsqn_rllib.config import TrainConfig
from dsqn_rllib.rllib.builder import to_dsqn_config


def build(args: argparse.Namespace, beside: bool) -> Any:
    cfg = TrainConfig(
        game=args.game,
        model=args.model,
        num_env_runners=0,
        envs_per_runner=args.envs,
        train_batch_size=args.batch,
        buffer_size=50_000,
        learning_starts=args.learning_starts,
        eval_interval=args.eval_interval,
        eval_episodes=args.eval_episodes,
        learner_device="cpu",
        seed=0,
    ).validate()
    config = to_dsqn_config(cfg, iteration_seconds=1.0)
    config.evaluation(evaluation_parallel_to_training=beside)
    return config.build_algo()


def window(algo: Any, seconds: float) -> dict[str, float]:
    """Train for ``seconds`` (then let a running evaluation end); rates over the whole time."""
    start = time.perf_counter()
    first = algo.train()["dsqn"]
    steps0, updates0 = first["env_steps"], first["updates"]
    start = time.perf_counter()
    evaluations = 0
    last = first
    while time.perf_counter() - start < seconds:
        result = algo.train()
        last = result["dsqn"]
        evaluations += "evaluation" in result
    if algo.evaluation_running:
        evaluations += algo.poll_evaluation(timeout_s=None) is not None
    elapsed = time.perf_counter() - start
    return {
        "env_steps_per_s": (last["env_steps"] - steps0) / elapsed,
        "updates_per_s": (last["updates"] - updates0) / elapsed,
        "evaluations": evaluations,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="pong")
    parser.add_argument("--model", default="dqn", choices=["dsqn", "dqn"])
    parser.add_argument("--envs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--learning-starts", type=int, default=2_000)
    parser.add_argument("--eval-interval", type=int, default=2_000)
    parser.add_argument("--eval-episodes", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    ray.init(address="local", num_cpus=max(2, os.cpu_count() or 1), include_dashboard=False)
    algos = {"in-iteration": build(args, beside=False), "beside": build(args, beside=True)}
    try:
        for name, algo in algos.items():  # fill the replay and start learning first
            while algo.train()["dsqn"]["updates"] == 0:
                pass
            print(f"{name}: learning started", flush=True)
        ratios: dict[str, list[float]] = {"env_steps_per_s": [], "updates_per_s": []}
        for round_ in range(args.rounds):
            rates = {name: window(algo, args.seconds) for name, algo in algos.items()}
            for name, r in rates.items():
                print(
                    f"round {round_ + 1} {name:>12}: {r['env_steps_per_s']:8.1f} env steps/s "
                    f"{r['updates_per_s']:7.2f} updates/s, {r['evaluations']:.0f} evaluations",
                    flush=True,
                )
            for key in ratios:
                ratios[key].append(rates["beside"][key] / max(1e-9, rates["in-iteration"][key]))
        for key, values in ratios.items():
            print(
                f"beside / in-iteration {key}: {statistics.median(values):.2f}x "
                f"(rounds: {', '.join(f'{v:.2f}' for v in values)})"
            )
    finally:
        for algo in algos.values():
            algo.stop()
        ray.shutdown()


if __name__ == "__main__":
    main()
