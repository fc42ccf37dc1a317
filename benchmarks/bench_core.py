"""Learner-update and inference speed of DQN vs DSQN, reference vs folded path, side by side.

    python benchmarks/bench_core.py                  # CPU, and CUDA too when present
    python benchmarks/bench_core.py --quick          # batch 32 only, fewer rounds
    python benchmarks/bench_core.py --precisions fp32,bf16 --threads 1 --cpu-time

Every variant is timed in the same process, interleaved round by round (these machines are
noisy), and reported as the median with its ratio to the fp32 DQN of the same batch size and,
for a bf16 variant, to its fp32 twin. ``--cpu-time`` with ``--threads 1`` times the thread's
CPU time instead of the wall clock: on a CPU shared with other jobs the wall clock of a
2-thread OpenMP op swings 10x when a neighbour takes a core; the CPU time barely moves.

An update
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
from dsqn_rllib.snn import lif_kernels
from dsqn_rllib.snn.optim import make_adam
from dsqn_rllib.snn.precision import learner_update

OBS_SHAPE = (4, 84, 84)
NUM_ACTIONS = 6
GAMMA = 0.99


@dataclass(frozen=True)
class Variant:
    label: str
    build: Callable[[], nn.Module]
    torch_lif: bool = False
    """Run the LIF layers with torch ops, not the fused CPU kernels (lif_kernels)."""


def variants(
    Ts: list[int],
    precisions: list[str],
    reference: bool,
    compiled: bool = False,
    torch_lif: bool = False,
) -> list[Variant]:
    out = [Variant("DQN", lambda: DQN(OBS_SHAPE, NUM_ACTIONS))]
    out += [
        Variant(f"DQN {p}", lambda p=p: DQN(OBS_SHAPE, NUM_ACTIONS, precision=p))
        for p in precisions
        if p != "fp32"
    ]
    for T in Ts:
        paths = ("reference", "folded") if reference else ("folded",)
        for path in paths:
            out.append(
                Variant(
                    f"DSQN T={T} {path}",
                    lambda T=T, path=path: DSQN(OBS_SHAPE, NUM_ACTIONS, T=T, execution=path),
                )
            )
        if torch_lif:
            out.append(
                Variant(
                    f"DSQN T={T} folded torch-LIF",
                    lambda T=T: DSQN(OBS_SHAPE, NUM_ACTIONS, T=T),
                    torch_lif=True,
                )
            )
        if compiled:  # torch.compile of the whole network (inductor), fp32
            out.append(
                Variant(
                    f"DSQN T={T} folded compiled",
                    lambda T=T: torch.compile(DSQN(OBS_SHAPE, NUM_ACTIONS, T=T)),
                )
            )
        for p in precisions:
            if p != "fp32":
                out.append(
                    Variant(
                        f"DSQN T={T} folded {p}",
                        lambda T=T, p=p: DSQN(OBS_SHAPE, NUM_ACTIONS, T=T, precision=p),
                    )
                )
    return out


def make_update(
    net: nn.Module, target: nn.Module, batch: int, device: torch.device
) -> Callable[[], None]:
    optimizer = make_adam(net.parameters(), lr=2.5e-4, eps=1e-8)  # the learner's Adam
    obs = torch.randint(0, 256, (batch, *OBS_SHAPE), dtype=torch.uint8, device=device)
    next_obs = torch.randint(0, 256, (batch, *OBS_SHAPE), dtype=torch.uint8, device=device)
    actions = torch.randint(0, NUM_ACTIONS, (batch,), device=device)
    rewards = torch.randn(batch, device=device)

    def update() -> None:
        with learner_update():  # as the learner: a bf16 net's target forward in bf16 too
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


CLOCK: Callable[[], float] = time.perf_counter


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
            start = CLOCK()
            fn()
            sync()
            samples[label].append(CLOCK() - start)
    return {k: statistics.median(v) for k, v in samples.items()}


def report(title: str, batch: int, medians: dict[str, float]) -> None:
    base = medians["DQN"]
    print(f"\n{title}, batch {batch}")
    print(f"  {'variant':<26}{'ms':>10}{'samples/s':>12}{'vs DQN':>9}{'vs fp32':>9}")
    for label, sec in medians.items():
        twin = label.rsplit(" ", 1)[0] if label.endswith(("bf16", "auto")) else None
        vs_fp32 = f"{sec / medians[twin]:>8.2f}x" if twin in medians else ""
        print(f"  {label:<26}{sec * 1e3:>10.2f}{batch / sec:>12.0f}{sec / base:>8.2f}x{vs_fp32}")


def _with_torch_lif(fn: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        with lif_kernels.torch_ops_only():
            fn()

    return run


def run_device(device: torch.device, batches: list[int], infer_batches: list[int],
               rounds: int, chosen: list[Variant]) -> None:  # fmt: skip
    threads = torch.get_num_threads()
    clock = "CPU time" if CLOCK is time.thread_time else "wall clock"
    print(
        f"\n=== {device.type.upper()} ({threads} threads, {clock}, torch {torch.__version__}) ==="
    )
    torch.manual_seed(0)
    nets = {v.label: (v, v.build().to(device), v.build().to(device)) for v in chosen}
    for batch in batches:
        fns = {}
        for label, (variant, net, target) in nets.items():
            fn = make_update(net, target, batch, device)
            if variant.torch_lif:
                fn = _with_torch_lif(fn)
            try:
                fn()  # a variant that cannot run here (e.g. no compiler) is reported, not fatal
            except Exception as err:
                print(f"  {label}: skipped ({type(err).__name__}: {str(err)[:120]})")
                continue
            fns[label] = fn
        report(
            "learner update (forward + backward + Adam + target forward)",
            batch,
            time_side_by_side(fns, rounds, device),
        )
    for batch in infer_batches:
        fns = {}
        for label, (variant, net, _) in nets.items():
            fn = make_inference(net, batch, device)
            fns[label] = _with_torch_lif(fn) if variant.torch_lif else fn
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
    parser.add_argument("--precisions", default="fp32,bf16", help="fp32, bf16, auto")
    parser.add_argument("--no-reference", action="store_true", help="skip the step-loop path")
    parser.add_argument("--compiled", action="store_true", help="add torch.compile'd DSQN")
    parser.add_argument(
        "--torch-lif", action="store_true", help="add the DSQN with torch-op LIF layers (CPU)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--cpu-time", action="store_true", help="time CPU, not wall (1 thread)")
    args = parser.parse_args()
    global CLOCK
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_time:
        if torch.get_num_threads() != 1:
            parser.error("--cpu-time measures one thread: add --threads 1")
        CLOCK = time.thread_time
    keep_freed_memory_mapped()  # as the learner and env runners do
    batches = [32] if args.quick else [int(b) for b in args.batches.split(",")]
    rounds = 3 if args.quick else args.rounds
    infer = [int(b) for b in args.infer_batches.split(",")]
    Ts = [int(t) for t in args.T.split(",")]
    precisions = args.precisions.split(",")
    reference = not args.no_reference
    chosen = variants(Ts, precisions, reference, args.compiled, args.torch_lif)
    if args.device in ("all", "cpu"):
        run_device(torch.device("cpu"), batches, infer, rounds, chosen)
    if args.device in ("all", "cuda"):
        if torch.cuda.is_available():
            run_device(torch.device("cuda"), batches, infer, rounds, chosen)
        else:
            print("\n(no CUDA device: GPU numbers not measured)")


if __name__ == "__main__":
    main()
