"""Throughput of the training pipeline, measured side by side in one run:

1. raw ``AtariVectorEnv`` stepping (random actions): the ceiling of the CPUs,
2. a minimal single-process loop: vector env → same network (ε-greedy) → frame replay →
   one plain-PyTorch update of ``--batch`` every ``--train-every`` env steps,
3. ``dsqn train``'s pipeline (``PipelinedDQN``), same model, same replay ratio, measured after
   learning has started, for each ``--runners`` count: 0 samples in the learner's process
   (sampling and learning take turns), N >= 1 samples on N Ray actors.

    python benchmarks/bench_pipeline.py                          # DSQN T=8 and DQN on Pong
    python benchmarks/bench_pipeline.py --models dsqn --runners 12 --envs 4 --seconds 60

These machines are noisy (a neighbour's load moves rates by 20% within a minute), so the
minimal loop and each pipeline stay alive side by side and are measured in alternating
windows of ``--seconds``, ``--rounds`` times; each ratio is the median of its rounds' ratios.
The minimal loop steps as many envs as the pipeline it is compared with
(``max(1, runners) * envs``). Prints env steps/s and updates/s of each and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dsqn_rllib.config import TrainConfig
from dsqn_rllib.envs.atari import AtariConfig, make_atari_vector_env
from dsqn_rllib.ops.runtime import keep_freed_memory_mapped
from dsqn_rllib.replay.frame_replay import FrameReplayBuffer, StreamTracker, newest_frames
from dsqn_rllib.snn.networks import build_q_network
from dsqn_rllib.snn.optim import make_adam
from dsqn_rllib.snn.precision import learner_update


@dataclass
class Throughput:
    env_steps_per_s: float
    updates_per_s: float


def raw_env(game: str, num_envs: int, seconds: float) -> Throughput:
    env = make_atari_vector_env(AtariConfig(game=game), num_envs, seed=0)
    env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(np.random.randint(0, env.single_action_space.n, num_envs))
        steps += num_envs
    env.close()
    return Throughput(steps / (time.perf_counter() - start), 0.0)


def minimal_loop(cfg: TrainConfig) -> Iterator[tuple[int, int]]:
    """The simplest correct DQN loop, in one process, with the same pieces and ratio. A
    generator: each ``next`` runs one env step (and its updates) and yields the lifetime
    (env steps, updates), so the loop can pause between measurement windows."""
    E = cfg.envs_per_runner * max(1, cfg.num_env_runners)
    atari = AtariConfig(game=cfg.game or "pong", terminal_on_life_loss=False)
    env = make_atari_vector_env(atari, E, seed=0)
    obs, _ = env.reset(seed=0)
    n = int(env.single_action_space.n)
    net = build_q_network(cfg.model, obs.shape[1:], n, **cfg.model_options())
    target = build_q_network(cfg.model, obs.shape[1:], n, **cfg.model_options())
    target.load_state_dict(net.state_dict())
    optimizer = make_adam(net.parameters(), lr=cfg.lr, eps=cfg.adam_eps)  # as the learner's
    replay = FrameReplayBuffer(cfg.buffer_size, E, obs.shape[2:], obs.shape[1], seed=0)
    tracker = StreamTracker(E)
    start_flags, valid = tracker.reset()
    rng = np.random.default_rng(0)
    ids = np.arange(E)
    steps = updates = 0
    try:
        while True:
            with torch.inference_mode():
                greedy = net(torch.from_numpy(obs)).argmax(1).numpy()
            action = np.where(rng.random(E) < 0.1, rng.integers(0, n, E), greedy)
            next_obs, reward, term, trunc, _ = env.step(action)
            replay.add_chunk(
                ids,
                newest_frames(obs)[:, None],
                action[:, None],
                np.sign(reward)[:, None].astype(np.float32),
                term[:, None],
                trunc[:, None],
                start_flags[:, None],
                valid[:, None],
            )
            start_flags, valid = tracker.step(term, trunc)
            obs = next_obs
            steps += E
            due = (steps - cfg.learning_starts) // cfg.train_every + 1
            while steps >= cfg.learning_starts and updates < due:
                with learner_update():  # the learner's precision (bf16: target forward too)
                    b = replay.sample(cfg.train_batch_size)
                    q = (
                        net(torch.from_numpy(b.obs))
                        .gather(1, torch.from_numpy(b.actions)[:, None])
                        .squeeze(1)
                    )
                    with torch.no_grad():
                        bootstrap = target(torch.from_numpy(b.next_obs)).amax(1)
                        done = torch.from_numpy(b.terminated)
                        y = torch.from_numpy(b.rewards) + cfg.gamma * (1 - done) * bootstrap
                    loss = nn.functional.mse_loss(q, y)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                updates += 1
            yield steps, updates
    finally:
        env.close()


class MinimalLoop:
    def __init__(self, cfg: TrainConfig, warmup_steps: int) -> None:
        self._loop = minimal_loop(cfg)
        self.counts = next(self._loop)
        while self.counts[0] < warmup_steps:
            self.counts = next(self._loop)

    def window(self, seconds: float) -> Throughput:
        (s0, u0), start = self.counts, time.perf_counter()
        while time.perf_counter() - start < seconds:
            self.counts = next(self._loop)
        elapsed = time.perf_counter() - start
        return Throughput((self.counts[0] - s0) / elapsed, (self.counts[1] - u0) / elapsed)

    def close(self) -> None:
        self._loop.close()


class Pipeline:
    """``dsqn train``'s algorithm, built once and trained in windows."""

    def __init__(self, cfg: TrainConfig, warmup_steps: int) -> None:
        from dsqn_rllib.rllib.builder import build_algorithm_config
        from dsqn_rllib.run import ensure_ray

        ensure_ray(cfg.num_env_runners)
        self.algo = build_algorithm_config(cfg).build_algo()  # as dsqn train
        self.report = self.algo.train()["dsqn"]
        while self.report["env_steps"] < warmup_steps:
            self.report = self.algo.train()["dsqn"]
        # When learning starts the replay already holds the runners' head start: let the
        # learner work off that backlog (runners throttled meanwhile) before measuring.
        envs = max(1, cfg.num_env_runners) * cfg.envs_per_runner
        while (self.report["env_steps"] - cfg.learning_starts) - self.report[
            "updates"
        ] * cfg.train_every > (2 * envs * self.report["chunk_steps"] + cfg.train_every):
            self.report = self.algo.train()["dsqn"]

    def window(self, seconds: float) -> Throughput:
        r0, start = self.report, time.perf_counter()
        while time.perf_counter() - start < seconds:
            self.report = self.algo.train()["dsqn"]
        elapsed = time.perf_counter() - start
        return Throughput(
            (self.report["env_steps"] - r0["env_steps"]) / elapsed,
            (self.report["updates"] - r0["updates"]) / elapsed,
        )

    def pause(self) -> None:
        """Let requests in flight finish, so runner actors leave the cores to the next window."""
        from dsqn_rllib.rllib.algorithm import SAMPLE_TAG

        algo = self.algo
        while algo.env_runner_group.num_in_flight_async_reqs(SAMPLE_TAG) > 0:
            algo._ingest(timeout_s=1.0)

    def close(self) -> None:
        import ray

        self.algo.stop()
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--game", default="pong")
    parser.add_argument("--models", default="dsqn,dqn")
    parser.add_argument("--T", type=int, default=8)
    parser.add_argument("--runners", default="0,1", help="runner counts to measure (0: none)")
    parser.add_argument("--envs", type=int, default=8, help="envs per runner")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--train-every", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0, help="one measurement window")
    parser.add_argument("--rounds", type=int, default=4, help="windows of each, alternating")
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--learner-device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    parser.add_argument(
        "--skip-minimal", action="store_true", help="pipeline only (no minimal-loop baseline)"
    )
    args = parser.parse_args()
    keep_freed_memory_mapped()
    runner_counts = [int(r) for r in args.runners.split(",")]
    raws: dict[int, Throughput] = {}
    for E in sorted({max(1, r) * args.envs for r in runner_counts}):
        raws[E] = raw_env(args.game, E, min(10.0, args.seconds))
        print(f"raw AtariVectorEnv, {E} envs: {raws[E].env_steps_per_s:,.0f} env steps/s")
    for model in args.models.split(","):
        label = f"{model}{f' T={args.T}' if model == 'dsqn' else ''}"
        print(f"\n{label}, batch {args.batch}, one update per {args.train_every} env steps:")
        for runners in runner_counts:
            E = max(1, runners) * args.envs
            cfg = (
                TrainConfig(
                    game=args.game,
                    model=model,
                    num_env_runners=runners,
                    envs_per_runner=args.envs,
                    train_batch_size=args.batch,
                    train_every=args.train_every,
                    learning_starts=args.learning_starts,
                    buffer_size=100_000,
                    epsilon_decay_steps=1,
                    epsilon_end=0.1,
                    learner_device=args.learner_device,
                    precision=args.precision,
                )
                .with_spiking(T=args.T)
                .validate()
            )
            warmup = args.learning_starts + 2 * E * 32
            pipe = Pipeline(cfg, warmup)
            pipe.pause()
            if args.skip_minimal:
                try:
                    windows = [pipe.window(args.seconds) for _ in range(args.rounds)]
                finally:
                    pipe.close()
                layout = "in-process" if runners == 0 else f"{runners} runners"
                _print_rates(f"dsqn train, {layout} x {args.envs} envs", _mean(windows))
                continue
            loop = MinimalLoop(cfg, warmup)
            loops, pipes = [], []
            try:
                for _ in range(args.rounds):
                    loops.append(loop.window(args.seconds))
                    pipes.append(pipe.window(args.seconds))
                    pipe.pause()
            finally:
                loop.close()
                pipe.close()
            layout = "in-process" if runners == 0 else f"{runners} runner{'s' * (runners > 1)}"
            _print_rates(f"minimal loop, {E} envs", _mean(loops))
            _print_rates(f"dsqn train, {layout} x {args.envs} envs", _mean(pipes))
            ratios = [
                p.env_steps_per_s / m.env_steps_per_s for p, m in zip(pipes, loops, strict=True)
            ]
            headroom = raws[E].env_steps_per_s / max(_mean(pipes).env_steps_per_s, 1e-9)
            rounds = ", ".join(f"{r:.2f}" for r in ratios)
            print(
                f"    ratio {statistics.median(ratios):.2f}x the minimal loop "
                f"(median of rounds {rounds}; raw env {headroom:,.0f}x faster)"
            )


def _mean(windows: list[Throughput]) -> Throughput:
    return Throughput(
        statistics.fmean(w.env_steps_per_s for w in windows),
        statistics.fmean(w.updates_per_s for w in windows),
    )


def _print_rates(name: str, t: Throughput) -> None:
    rates = f"{t.env_steps_per_s:9,.1f} env steps/s {t.updates_per_s:8,.2f} updates/s"
    print(f"  {name:<34}: {rates}", flush=True)


if __name__ == "__main__":
    main()
