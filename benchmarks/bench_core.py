"""Learner-update and inference speed of DQN vs DSQN, reference vs folded path, side by side.

    python benchmarks/bench_core.py                  # CPU, and CUDA too when present
    python benchmarks/bench_core.py --quick          # batch 32 only, fewer rounds

Every variant is timed in the same process, interleaved round by round (these machines are
noisy), and reported as the median with its ratio to the DQN of the same batch size. An update
is what a DQN learner does per step: online forward + TD loss (MSE) + backward + Adam step,
plus the target network's forward on the next observations.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from dsqn_rllib import DQN, DSQN
from dsqn_rllib.ops.runtime import keep_freed_memory_mapped

OBS_SHAPE = (4, 84, 84)
NUM_ACTIONS = 6
GAMMA = 0.99


@dataclass(frozen=True)
class Variant:
    label: str
    build: Callable[[], nn.Module]


def variants(Ts: list[int]) -> list[Variant]:
    out = [Variant("DQN", lambda: DQN(OBS_SHAPE, NUM_ACTIONS))]
    for T in Ts:
        for path in ("reference", "folded"):
            out.append(
                Variant(
                    f"DSQN T={T} {path}",
                    lambda T=T, path=path: DSQN(OBS_SHAPE, NUM_ACTIONS, T=T, execution=path),
                )
            )
    return out


def make_update(
    net: nn.Module, target: nn.Module, batch: int, device: torch.device
) -> Callable[[], None]:
    optimizer = torch.optim.Adam(net.parameters(), lr=2.5e-4)
    obs = torch.randint(0, 256, (batch, *OBS_SHAPE), dtype=torch.uint8, device=device)
    next_obs = torch.randint(0, 256, (batch, *OBS_SHAPE), dtype=torch.uint8, device=device)
    actions = torch.randint(0, NUM_ACTIONS, (batch,), device=device)
    rewards = torch.randn(batch, device=device)

    def update() -> None:
        q = net(obs).gather(1, actions[:, None]).squeeze(1)
        with torch.no_grad():
            td_target = rewards + GAMMA * target(next_obs).amax(dim=1)
        loss = nn.functional.mse_loss(q, td_target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return update


def make_inference(net: nn.Module, batch: int, device: torch.device) -> Callable[[], None]:
    obs = torch.randint(0, 256, (batch, *OBS_SHAPE), dtype=torch.uint8, device=device)

    def infer() -> None:
        with torch.inference_mode():
            net(obs).argmax(dim=1)

    return infer


def time_side_by_side(
    fns: dict[str, Callable[[], None]], rounds: int, device: torch.device
) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved round by round."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for fn in fns.values():  # warm-up (allocator, oneDNN primitive caches, cuDNN autotune)
        fn()
        fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for label, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            samples[label].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in samples.items()}


def report(title: str, batch: int, medians: dict[str, float]) -> None:
    base = medians["DQN"]
    print(f"\n{title}, batch {batch}")
    print(f"  {'variant':<24}{'ms':>10}{'samples/s':>12}{'vs DQN':>9}")
    for label, sec in medians.items():
        print(f"  {label:<24}{sec * 1e3:>10.2f}{batch / sec:>12.0f}{sec / base:>8.2f}x")


def run_device(
    device: torch.device, batches: list[int], infer_batches: list[int], Ts: list[int], rounds: int
) -> None:
    threads = torch.get_num_threads()
    print(f"\n=== {device.type.upper()} ({threads} threads, torch {torch.__version__}) ===")
    torch.manual_seed(0)
    nets = {v.label: (v.build().to(device), v.build().to(device)) for v in variants(Ts)}
    for batch in batches:
        fns = {
            label: make_update(net, target, batch, device) for label, (net, target) in nets.items()
        }
        report(
            "learner update (forward + backward + Adam + target forward)",
            batch,
            time_side_by_side(fns, rounds, device),
        )
    for batch in infer_batches:
        fns = {label: make_inference(net, batch, device) for label, (net, _) in nets.items()}
        report("inference (greedy action)", batch, time_side_by_side(fns, rounds * 3, device))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", default="32,128,512", help="learner batch sizes")
    parser.add_argument("--infer-batches", default="1,64", help="inference batch sizes")
    parser.add_argument("--T", default="4,8", help="simulation steps to compare")
    parser.add_argument(
        "--rounds", type=int, default=5, help="timed calls per variant (median taken)"
    )
    parser.add_argument("--quick", action="store_true", help="batch 32 and 3 rounds only")
    parser.add_argument("--device", choices=["all", "cpu", "cuda"], default="all")
    args = parser.parse_args()
    keep_freed_memory_mapped()  # as the learner and env runners do
    batches = [32] if args.quick else [int(b) for b in args.batches.split(",")]
    rounds = 3 if args.quick else args.rounds
    infer = [int(b) for b in args.infer_batches.split(",")]
    Ts = [int(t) for t in args.T.split(",")]
    if args.device in ("all", "cpu"):
        run_device(torch.device("cpu"), batches, infer, Ts, rounds)
    if args.device in ("all", "cuda"):
        if torch.cuda.is_available():
            run_device(torch.device("cuda"), batches, infer, Ts, rounds)
        else:
            print("\n(no CUDA device: GPU numbers not measured)")


if __name__ == "__main__":
    main()
