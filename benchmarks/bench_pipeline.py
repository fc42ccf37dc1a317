"""Throughput of the training pipeline, measured side by side in one run:

1. raw ``AtariVectorEnv`` stepping (random actions): the ceiling of the CPUs,
2. a minimal single-process loop: vector env → same network (ε-greedy) → frame replay →
   one plain-PyTorch update of ``--batch`` every ``--train-every`` env steps,
3. ``dsqn train``'s pipeline (``PipelinedDQN`` on real Ray actors), same model, same replay
   ratio, measured after learning has started.

    python benchmarks/bench_pipeline.py                          # DSQN T=8 and DQN on Pong
    python benchmarks/bench_pipeline.py --models dsqn --runners 12 --envs 4 --seconds 60

Prints env steps/s and updates/s of each, and the pipeline / minimal-loop ratio.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dsqn_rllib.atari import AtariConfig, make_atari_vector_env
from dsqn_rllib.config import TrainConfig
from dsqn_rllib.models import build_q_network
from dsqn_rllib.optim import make_adam
from dsqn_rllib.replay import FrameReplayBuffer, StreamTracker, newest_frames
from dsqn_rllib.runtime import keep_freed_memory_mapped


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


def minimal_loop(cfg: TrainConfig, seconds: float, warmup_steps: int) -> Throughput:
    """The simplest correct DQN loop, in one process, with the same pieces and ratio."""
    E = cfg.envs_per_runner * cfg.num_env_runners
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
    t_start = None
    while True:
        if steps >= warmup_steps and t_start is None:
            t_start, steps_at_start, updates_at_start = time.perf_counter(), steps, updates
        if t_start is not None and time.perf_counter() - t_start >= seconds:
            break
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
    elapsed = time.perf_counter() - t_start
    env.close()
    return Throughput((steps - steps_at_start) / elapsed, (updates - updates_at_start) / elapsed)


def pipeline(cfg: TrainConfig, seconds: float, warmup_steps: int) -> Throughput:
    import ray

    from dsqn_rllib.rllib.builder import build_algorithm_config
    from dsqn_rllib.train import ensure_ray

    ensure_ray(cfg.num_env_runners)
    algo = build_algorithm_config(cfg, iteration_seconds=1.0).build_algo()
    try:
        report = algo.train()["dsqn"]
        while report["env_steps"] < warmup_steps:
            report = algo.train()["dsqn"]
        # When learning starts the replay already holds the runners' head start: let the
        # learner work off that backlog (runners throttled meanwhile) before measuring.
        envs = cfg.num_env_runners * cfg.envs_per_runner
        while (report["env_steps"] - cfg.learning_starts) - report["updates"] * cfg.train_every > (
            2 * envs * report["chunk_steps"] + cfg.train_every  # the runners' allowed lead
        ):
            report = algo.train()["dsqn"]
        t0, s0, u0 = time.perf_counter(), report["env_steps"], report["updates"]
        while time.perf_counter() - t0 < seconds:
            report = algo.train()["dsqn"]
        elapsed = time.perf_counter() - t0
        return Throughput((report["env_steps"] - s0) / elapsed, (report["updates"] - u0) / elapsed)
    finally:
        algo.stop()
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--game", default="pong")
    parser.add_argument("--models", default="dsqn,dqn")
    parser.add_argument("--T", type=int, default=8)
    parser.add_argument("--runners", type=int, default=1)
    parser.add_argument("--envs", type=int, default=8, help="envs per runner")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--train-every", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0, help="measurement window of each")
    parser.add_argument("--learning-starts", type=int, default=1000)
    args = parser.parse_args()
    keep_freed_memory_mapped()
    E = args.runners * args.envs
    raw = raw_env(args.game, E, min(10.0, args.seconds))
    print(f"raw AtariVectorEnv, {E} envs: {raw.env_steps_per_s:,.0f} env steps/s")
    for model in args.models.split(","):
        cfg = (
            TrainConfig(
                game=args.game,
                model=model,
                num_env_runners=args.runners,
                envs_per_runner=args.envs,
                train_batch_size=args.batch,
                train_every=args.train_every,
                learning_starts=args.learning_starts,
                buffer_size=100_000,
                epsilon_decay_steps=1,
                epsilon_end=0.1,
            )
            .with_spiking(T=args.T)
            .validate()
        )
        warmup = args.learning_starts + 2 * E * 32
        loop = minimal_loop(cfg, args.seconds, warmup)
        pipe = pipeline(cfg, args.seconds, warmup)
        label = f"{model}{f' T={args.T}' if model == 'dsqn' else ''}"
        print(f"\n{label}, batch {args.batch}, one update per {args.train_every} env steps:")
        for name, t in (("minimal loop", loop), ("dsqn train", pipe)):
            rates = f"{t.env_steps_per_s:9,.1f} env steps/s {t.updates_per_s:8,.2f} updates/s"
            print(f"  {name:<13}: {rates}")
        ratio = pipe.env_steps_per_s / loop.env_steps_per_s
        headroom = raw.env_steps_per_s / max(pipe.env_steps_per_s, 1e-9)
        print(f"  ratio        : {ratio:9.2f}x env steps/s (raw env steps {headroom:,.0f}x faster)")


if __name__ == "__main__":
    main()
