"""The paper's experiments from the command line: ``dsqn sweep``, ``dsqn compare``,
``dsqn robustness`` (their parsers and handlers; ``dsqn_rllib.cli`` mounts them).

    dsqn sweep --game pong,breakout --model dsqn,dqn --seed 0,1,2 --total-steps 2000000 \\
        --name s1 --run-dir runs          # a Tune grid; each trial in the run registry
    dsqn sweep --preset paper-17 --dry-run   # the plan and its cost, nothing started
    dsqn compare --sweep s1 --run-dir runs --format markdown --curves s1.png
    dsqn robustness runs/dsqn-pong-... runs/dqn-pong-... --attack fgsm --eps 0,0.001,0.005,0.01
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

from dsqn_rllib.errors import ConfigError


def _split(text: str | None, kind: type = str) -> list[Any] | None:
    if text is None:
        return None
    try:
        return [kind(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(
            f"expected a comma-separated list of {kind.__name__}, got {text!r}"
        ) from None


def add_parsers(sub: Any) -> None:
    sweep = sub.add_parser("sweep", help="a grid of trials on Ray Tune (games x models x seeds)")
    sweep.add_argument("--preset", choices=["paper-17", "readout-ablation"], default=None)
    sweep.add_argument("--game", default=None, help="Atari games, comma separated (pong,breakout)")
    sweep.add_argument("--env", default=None, help="Gymnasium ids instead (CartPole-v1)")
    sweep.add_argument("--model", default=None, help="dsqn,dqn (default both)")
    sweep.add_argument("--readout", default=None, help="readouts of the DSQN (default max-mem)")
    sweep.add_argument("--T", default=None, help="simulation steps of the DSQN (default 8)")
    sweep.add_argument("--seed", default=None, help="seeds (default 0)")
    sweep.add_argument("--total-steps", type=int, default=None, help="env steps per trial")
    sweep.add_argument("--learning-starts", type=int, default=None)
    sweep.add_argument("--buffer-size", type=int, default=None)
    sweep.add_argument("--train-batch-size", type=int, default=None)
    sweep.add_argument("--lr", type=float, default=None)
    sweep.add_argument("--num-env-runners", type=int, default=0)
    sweep.add_argument("--envs-per-runner", type=int, default=4)
    sweep.add_argument(
        "--evaluation-interval", type=int, default=None, help="iterations between evaluations"
    )
    sweep.add_argument("--eval-episodes", type=int, default=30)
    sweep.add_argument(
        "--learner-device", choices=["auto", "cpu", "cuda"], default="auto",
        help="each trial's learner (auto: cuda where the node has a GPU)",
    )  # fmt: skip
    sweep.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32")
    sweep.add_argument(
        "--metrics", action="store_true",
        help="each trial serves Prometheus series on a free port and announces it in "
        "$DSQN_PROMETHEUS_TARGETS_DIR (default /tmp/dsqn/prometheus_targets) for "
        "dashboards/prometheus.yml's file_sd job",
    )  # fmt: skip
    sweep.add_argument("--metrics-host", default="127.0.0.1")
    sweep.add_argument("--name", default=None, help="the sweep's name (default: the preset's)")
    sweep.add_argument("--run-dir", default="runs", help="Tune storage and the run registry")
    sweep.add_argument("--dry-run", action="store_true", help="print the plan and stop")

    comp = sub.add_parser("compare", help="the paper's table from a sweep's runs")
    comp.add_argument(
        "runs", nargs="*", help="dsqn train run directories (default: the registry's runs)"
    )
    comp.add_argument("--sweep", default=None, help="only this sweep's runs (default: all)")
    comp.add_argument("--run-dir", default="runs", help="where the run registry is")
    comp.add_argument("--registry-url", default=None, help="Redis URL (default: $DSQN_REDIS_URL)")
    comp.add_argument("--format", choices=["table", "csv", "markdown", "latex"], default="table")
    comp.add_argument(
        "--curves", default=None, help="also plot the learning curves over seeds to this PNG"
    )
    comp.add_argument(
        "--band", choices=["std", "minmax"], default="std", help="the band over seeds"
    )

    rob = sub.add_parser("robustness", help="the paper's evaluation under FGSM / PGD attacks")
    rob.add_argument(
        "runs", nargs="+",
        help="run directories or checkpoints (DSQN, DQN, ...), or a dsqn sweep's trial folders",
    )  # fmt: skip
    rob.add_argument("--attack", choices=["fgsm", "pgd"], default="fgsm")
    rob.add_argument("--eps", default="0,0.001,0.005,0.01", help="L-inf radii in [0, 1] pixels")
    rob.add_argument("--pgd-steps", type=int, default=10)
    rob.add_argument("--source", default=None, help="transfer: attack computed on this run")
    rob.add_argument("--episodes", type=int, default=30)
    rob.add_argument("--seed", type=int, default=0)
    rob.add_argument("--max-episode-frames", type=int, default=108_000)
    rob.add_argument("--format", choices=["table", "csv", "markdown", "latex"], default="table")
    rob.add_argument("--png", default=None, help="also plot return against eps to this PNG")


# --- dsqn sweep -------------------------------------------------------------------------------


def sweep(args: argparse.Namespace) -> int:
    from dsqn_rllib.config import TrainConfig
    from dsqn_rllib.rllib.builder import to_dsqn_config
    from dsqn_rllib.rllib.callbacks import RunObserver
    from dsqn_rllib.rllib.sweep import PRESETS, SweepPlan, run_sweep

    if args.game and args.env:
        raise ConfigError("give --game (Atari) or --env (Gymnasium ids), not both")
    plan = dataclasses.replace(PRESETS[args.preset]) if args.preset else SweepPlan(name="sweep")
    overrides: dict[str, Any] = {
        "envs": _split(args.game) or _split(args.env),
        "models": _split(args.model),
        "readouts": _split(args.readout),
        "Ts": _split(args.T, int),
        "seeds": _split(args.seed, int),
        "total_steps": args.total_steps,
        "evaluation_interval": args.evaluation_interval,
        "name": args.name,
    }
    plan = dataclasses.replace(plan, **{k: v for k, v in overrides.items() if v is not None})
    first = plan.envs[0]
    is_gym = args.env is not None
    train = TrainConfig(
        game=None if is_gym else first,
        env=first if is_gym else None,
        num_env_runners=args.num_env_runners,
        envs_per_runner=args.envs_per_runner,
        eval_episodes=args.eval_episodes,
        learner_device=args.learner_device,
        precision=args.precision,
        metrics_port=0 if args.metrics else None,
        metrics_host=args.metrics_host,
        **{
            k: v
            for k, v in {
                "learning_starts": args.learning_starts,
                "buffer_size": args.buffer_size,
                "train_batch_size": args.train_batch_size,
                "lr": args.lr,
            }.items()
            if v is not None
        },
    ).validate()
    # A trial evaluates every plan.evaluation_interval iterations in its own process (an
    # overlapped evaluation would ask every trial for one more CPU).
    base = (
        to_dsqn_config(train)
        .callbacks(RunObserver)
        .evaluation(
            evaluation_interval_env_steps=0,
            evaluation_parallel_to_training=False,
        )
    )
    print(plan.describe(), flush=True)
    from dsqn_rllib.rllib.sweep import sweep_config

    sweep_config(plan, base, args.run_dir)  # every variant checked before Ray starts
    if args.dry_run:
        return 0
    results = run_sweep(plan, base, args.run_dir)
    failed = [r for r in results if r.error]
    print(
        f"sweep {plan.name}: {len(results) - len(failed)} of {len(results)} trials done; "
        f"`dsqn compare --sweep {plan.name} --run-dir {args.run_dir}` for the table"
    )
    return 1 if failed else 0


# --- dsqn compare -----------------------------------------------------------------------------


def compare(args: argparse.Namespace) -> int:
    from dsqn_rllib.evaluation.compare import compare as rows_of
    from dsqn_rllib.evaluation.compare import (
        records_from_run_dirs,
        render,
        run_curve,
        run_score,
        scores_from_registry,
    )
    from dsqn_rllib.ops.registry import RegistryConfig, open_registry

    if args.runs:  # run directories, read from their files
        if args.sweep:
            raise ConfigError("give run directories or --sweep, not both")
        records = records_from_run_dirs(args.runs)
        scores = [s for s in (run_score(r, e) for r, e in records) if s is not None]
        where = "the run directories given"
    else:
        registry = open_registry(RegistryConfig.resolve(args.registry_url, None, args.run_dir))
        scores = scores_from_registry(registry, sweep=args.sweep)
        where = f"{f'sweep {args.sweep!r}' if args.sweep else 'the registry'} at {registry.where}"
    if not scores:
        raise ConfigError(f"no evaluated runs in {where}")
    print(render(rows_of(scores), args.format), end="")
    if args.curves:
        from dsqn_rllib.evaluation.compare import curves_from_registry, write_learning_curves

        if args.runs:
            curves = [c for c in (run_curve(r, e) for r, e in records) if c is not None]
        else:
            curves = curves_from_registry(registry, sweep=args.sweep)
        path = write_learning_curves(curves, args.curves, args.band, title=args.sweep)
        print(f"wrote {path}", file=sys.stderr)  # stdout stays the table (csv for a pipe)
    return 0


# --- dsqn robustness ----------------------------------------------------------------------------


def _load(path: str) -> tuple[Any, str, str]:
    """(network, env, label) of a ``dsqn train`` run or checkpoint, or of a ``dsqn sweep``
    trial (its folder or one of its RLlib checkpoints)."""
    from dsqn_rllib.ops.checkpoints import load_network

    try:
        net, cfg, _ = load_network(path)
    except ConfigError:
        from dsqn_rllib.rllib.checkpoints import (
            latest_algorithm_checkpoint,
            network_from_algorithm_checkpoint,
        )

        if latest_algorithm_checkpoint(path) is None:
            raise
        net, env, model = network_from_algorithm_checkpoint(path)
        return net, env, f"{model} {Path(path).name}"
    env = cfg.game if cfg.is_atari else cfg.env
    return net, str(env), f"{cfg.model.value} {Path(path).name}"


def robustness(args: argparse.Namespace) -> int:
    from dsqn_rllib.evaluation.compare import TableFormat
    from dsqn_rllib.evaluation.protocol import EvalConfig
    from dsqn_rllib.evaluation.robustness import AttackConfig, evaluate_under_attack

    eps_list = _split(args.eps, float) or [0.0]
    try:
        attacks = [AttackConfig(args.attack, eps=e, steps=args.pgd_steps) for e in eps_list]
        eval_cfg = EvalConfig(
            episodes=args.episodes, seed=args.seed, max_episode_frames=args.max_episode_frames
        )
    except ValueError as err:
        raise ConfigError(str(err)) from None
    source = _load(args.source)[0] if args.source else None
    rows: list[list[str]] = []
    curves: dict[str, list[float]] = {}
    for run in args.runs:
        net, env, label = _load(run)
        for attack in attacks:
            result = evaluate_under_attack(net, env, eval_cfg, attack, source=source)
            rows.append(
                [
                    label,
                    env,
                    args.attack,
                    f"{attack.eps:g}",
                    str(result.num_episodes),
                    f"{result.mean:.2f}",
                    f"{result.std:.2f}",
                ]
            )
            curves.setdefault(label, []).append(result.mean)
            print(f"{label} {args.attack} eps={attack.eps:g}: mean {result.mean:.2f}", flush=True)
    header = ["run", "env", "attack", "eps", "episodes", "mean", "std"]
    print(_render_rows(header, rows, TableFormat(args.format)), end="")
    if args.png:
        _plot(args.png, eps_list, curves, args.attack, transfer=args.source is not None)
        print(f"wrote {args.png}")
    return 0


def _render_rows(header: list[str], rows: list[list[str]], fmt: Any) -> str:
    import csv
    import io

    if fmt.value == "csv":
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([header, *rows])
        return out.getvalue()
    if fmt.value == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"
    if fmt.value == "latex":
        body = [" & ".join(r).replace("_", r"\_") + r" \\" for r in rows]
        cols = "l" * 3 + "r" * 4
        return "\n".join(
            [rf"\begin{{tabular}}{{{cols}}}", " & ".join(header) + r" \\", *body, r"\end{tabular}"]
        ) + "\n"  # fmt: skip
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _plot(
    path: str, eps: list[float], curves: dict[str, list[float]], attack: str, transfer: bool
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, means in curves.items():
        ax.plot(eps, means, marker="o", label=label)
    ax.set_xlabel("eps (L-inf, pixels in [0, 1])")
    ax.set_ylabel("mean return (paper protocol)")
    ax.set_title(f"{attack.upper()} {'transfer' if transfer else 'white-box'}")
    if any(e > 0 for e in eps) and min(e for e in eps if e > 0) > 0 and not math.isnan(eps[0]):
        ax.set_xscale("symlog", linthresh=min(e for e in eps if e > 0))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


COMMANDS = {"sweep": sweep, "compare": compare, "robustness": robustness}
