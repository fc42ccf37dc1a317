"""``dsqn``: the command line.

    dsqn train --game pong [--model dqn] [--num-env-runners 8] [--T 4] ...   every TrainConfig field
    dsqn train --resume runs/<run-id>                                          continue a run
    dsqn train --resume RUN_ID                                  continue a run of the run registry
    dsqn runs [RUN_ID] [--registry-url redis://host:6379/0] [--json]   the registry's runs
    dsqn eval CHECKPOINT [--episodes 30] [--epsilon 0.05] [--gif episode.gif]
    dsqn report RUN                                                            PNG plots of a run

Every value is checked before Ray starts; a bad one is a single ``dsqn: error: ...`` line.
``dsqn train`` exits 0 when done, 130 / 143 when SIGINT / SIGTERM stopped it (checkpoint saved,
the resume command printed), 1 when a checkpoint could not be written, 2 on a bad value.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Any

from dsqn_rllib import experiments
from dsqn_rllib.config import TrainConfig
from dsqn_rllib.errors import ConfigError
from dsqn_rllib.ops.checkpoints import CheckpointError
from dsqn_rllib.ops.registry import (
    RegistryConfig,
    RegistryError,
    RunRecord,
    RunRegistry,
    RunStatus,
    open_registry,
)
from dsqn_rllib.ops.stopping import RunAborted, exit_code_for
from dsqn_rllib.snn.networks import SpikingConfig

_SPIKING_FIELDS = [f for f in dataclasses.fields(SpikingConfig)]
_TRAIN_FIELDS = [f for f in dataclasses.fields(TrainConfig) if f.name != "spiking"]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _field_help(cls: type, name: str) -> str:
    """The attribute docstring under a dataclass field (the source is the documentation)."""
    import inspect

    try:
        lines = inspect.getsource(cls).splitlines()
    except OSError:
        return ""
    for i, line in enumerate(lines):
        if line.strip().startswith(f"{name}:") and i + 1 < len(lines):
            if not lines[i + 1].strip().startswith('"""'):
                return ""
            text = []
            for nxt in lines[i + 1 :]:  # a docstring may run over several lines
                text.append(nxt.strip())
                if nxt.rstrip().endswith('"""') and (len(text) > 1 or nxt.count('"""') == 2):
                    break
            return " ".join(text).strip('"').strip()
    return ""


def _add_field(
    parser: argparse.ArgumentParser, cls: type, field: dataclasses.Field, default: Any
) -> None:
    flag = _flag(field.name)
    helptext = _field_help(cls, field.name)
    if isinstance(default, bool):
        parser.add_argument(
            flag,
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"{helptext} (default {default})",
        )
    elif isinstance(default, Enum):
        parser.add_argument(flag, default=None, help=f"{helptext} (default {default.value})")
    elif isinstance(default, tuple):
        parser.add_argument(
            flag,
            default=None,
            help=f"{helptext} (comma separated, default {','.join(map(str, default))})",
        )
    elif isinstance(default, (int, float)):
        parser.add_argument(flag, default=None, help=f"{helptext} (default {default})")
    else:
        parser.add_argument(flag, default=None, help=f"{helptext} (default {default})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsqn", description="Deep Spiking Q-Networks on Atari with Ray RLlib"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train DSQN (or the DQN twin) with the paper's defaults")
    train.add_argument(
        "--resume",
        default=None,
        metavar="RUN",
        help="continue a run: its checkpoint or run directory, or its id in the run registry",
    )
    defaults = TrainConfig()
    for f in _TRAIN_FIELDS:
        _add_field(train, TrainConfig, f, getattr(defaults, f.name))
    spiking = train.add_argument_group("spiking network")
    for f in _SPIKING_FIELDS:
        _add_field(spiking, SpikingConfig, f, getattr(defaults.spiking, f.name))

    ev = sub.add_parser("eval", help="evaluate a checkpoint with the paper's protocol")
    ev.add_argument("checkpoint", help="checkpoint directory or run directory (uses its latest)")
    ev.add_argument("--episodes", type=int, default=30)
    ev.add_argument("--epsilon", type=float, default=0.05)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--max-episode-frames", type=int, default=108_000)
    ev.add_argument("--gif", default=None, help="also record one episode to this GIF file")

    rep = sub.add_parser(
        "report", help="write PNG plots (return, firing rates, throughput) of a run"
    )
    rep.add_argument("run", help="run directory (runs/<run-id>)")
    rep.add_argument("--out", default=None, help="folder for the PNGs (default: the run directory)")

    runs = sub.add_parser("runs", help="list the runs of the run registry (Redis or local store)")
    runs.add_argument("run", nargs="?", default=None, help="show this run and its evaluations")
    runs.add_argument(
        "--registry-url",
        "--registry",
        default=None,
        help="Redis URL (default: $DSQN_REDIS_URL, else the local store in --run-dir; "
        "password from $DSQN_REDIS_PASSWORD)",
    )
    runs.add_argument("--registry-prefix", default=None, help="Redis key prefix (default dsqn)")
    runs.add_argument("--run-dir", default="runs", help="local store's folder (default runs)")
    runs.add_argument(
        "--stale-after",
        default=None,
        metavar="SECONDS",
        help="a running run without a heartbeat for this long shows as lost (default "
        f"{RegistryConfig.stale_after_s:g})",
    )
    runs.add_argument("--json", action="store_true", help="JSON instead of a table")
    experiments.add_parsers(sub)  # sweep, compare, robustness
    return parser


# Optional numeric fields (default None) and the type a flag's text converts to.
_OPTIONAL_NUMBERS: dict[str, type] = {
    "surrogate_alpha": float,
    "stop_eval_return": float,
    "grad_clip": float,
    "metrics_port": int,
}


def _convert(raw: str, default: Any, name: str) -> Any:
    """A flag's text as the type of the field's default; one-line error otherwise."""
    kind: type = type(default)
    if default is None:
        kind = _OPTIONAL_NUMBERS.get(name, str)
    try:
        if isinstance(default, (bool, Enum)):
            return raw
        if isinstance(default, tuple):
            return tuple(int(x) for x in str(raw).split(",") if x)
        if kind in (int, float):
            return kind(raw)
        return raw
    except ValueError:
        expected = "integers" if isinstance(default, tuple) else kind.__name__
        raise ConfigError(f"{_flag(name)} expects {expected}, got {raw!r}") from None


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig from parsed flags, validated (ConfigError on the first bad value)."""
    defaults = TrainConfig()
    values: dict[str, Any] = {}
    for f in _TRAIN_FIELDS:
        raw = getattr(args, f.name)
        if raw is not None:
            values[f.name] = _convert(raw, getattr(defaults, f.name), f.name)
    if "env" in values and "game" not in values:
        values["game"] = None
    spiking: dict[str, Any] = {}
    for f in _SPIKING_FIELDS:
        raw = getattr(args, f.name)
        if raw is not None:
            spiking[f.name] = _convert(raw, getattr(defaults.spiking, f.name), f.name)
    cfg = TrainConfig(**values)
    if spiking:
        cfg = cfg.with_spiking(**spiking)
    return cfg.validate()


def _registry_config(args: argparse.Namespace, **options: Any) -> RegistryConfig:
    """The registry the flags (or $DSQN_REDIS_URL, or the local store in --run-dir) name."""
    return RegistryConfig.resolve(
        args.registry_url, args.registry_prefix, run_root=args.run_dir or "runs", **options
    )


def _resume_target(args: argparse.Namespace) -> tuple[Path, RunRegistry | None]:
    """--resume names a checkpoint or run directory, or a run id of the registry."""
    raw = str(args.resume)
    path = Path(raw).expanduser()
    if path.exists() or os.sep in raw or raw.startswith((".", "~")):
        # A path: the run keeps its own registry unless a flag names another one.
        named = args.registry_url is not None or args.registry_prefix is not None
        return path, open_registry(_registry_config(args)) if named else None
    config = _registry_config(args)
    if config.url is None and not config.local_path.is_file():
        raise ConfigError(
            f"no run {raw!r}: no such directory, and no run registry at {config.where} "
            f"(for Redis give --registry-url or set DSQN_REDIS_URL)"
        )
    registry = open_registry(config)
    record = registry.get_run(raw)
    if record is None:
        raise ConfigError(
            f"no run {raw!r} in the run registry at {registry.where} (nor a directory of that name)"
        )
    return Path(record.run_dir), registry


def _train(args: argparse.Namespace) -> int:
    from dsqn_rllib.run import Trainer

    if args.resume:
        total = None
        if args.total_steps is not None:
            total = _convert(args.total_steps, TrainConfig.total_steps, "total_steps")
        path, registry = _resume_target(args)
        trainer = Trainer.resume(path, total_steps=total, registry=registry)
    else:
        trainer = Trainer(config_from_args(args))
    summary = trainer.run()
    if summary.stopped_by is not None:
        return summary.exit_code  # the trainer printed where the checkpoint is and how to resume
    print(
        f"[{summary.run_id}] done: {summary.env_steps:,} env steps, {summary.updates:,} updates "
        f"in {summary.seconds:,.0f} s; run directory {summary.run_dir}"
    )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from dsqn_rllib.evaluation.protocol import EvalConfig, evaluate, record_episode_gif
    from dsqn_rllib.ops.checkpoints import load_network

    try:
        eval_cfg = EvalConfig(
            episodes=args.episodes,
            epsilon=args.epsilon,
            seed=args.seed,
            max_episode_frames=args.max_episode_frames,
        )
    except ValueError as err:
        raise ConfigError(str(err)) from None
    net, cfg, progress = load_network(args.checkpoint)
    env = cfg.game if cfg.is_atari else cfg.env
    result = evaluate(net, env, eval_cfg)  # type: ignore[arg-type]
    print(
        f"{cfg.model.value} on {env} ({progress.get('env_steps', 0):,} env steps): "
        f"mean {result.mean:.2f} std {result.std:.2f} max {result.max:.1f} "
        f"over {result.num_episodes} episodes"
    )
    if args.gif:
        info = record_episode_gif(net, env, args.gif, epsilon=args.epsilon, seed=args.seed)  # type: ignore[arg-type]
        print(f"wrote {args.gif} ({info})")
    return 0


def _report(args: argparse.Namespace) -> int:
    from dsqn_rllib.evaluation.report import write_report

    for path in write_report(args.run, args.out):
        print(f"wrote {path}")
    return 0


def _age(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "-"
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit} ago"
    return f"{seconds:.0f}s ago"


def _short_path(path: str | None) -> str:
    if not path:
        return "-"
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def _run_row(run: RunRecord, status: RunStatus, now: float) -> list[str]:
    best = "-" if run.best_eval_return is None else f"{run.best_eval_return:.1f}"
    latest = "-"
    if run.latest_checkpoint:
        latest = f"{_short_path(run.latest_checkpoint)} @{run.latest_checkpoint_steps or 0:,}"
    return [
        run.run_id,
        run.env,
        run.model,
        # A live run with a health warning (e.g. a silent spiking net) says so in the list.
        f"{status.value} (warning)"
        if run.warning and status is RunStatus.RUNNING
        else status.value,
        f"{run.env_steps:,}/{run.total_steps:,}",
        best,
        latest,
        _age(now - run.heartbeat_at),
    ]


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _runs(args: argparse.Namespace) -> int:
    stale_after = RegistryConfig.stale_after_s
    if args.stale_after is not None:
        stale_after = _convert(args.stale_after, 1.0, "stale_after")
    config = _registry_config(args, stale_after_s=stale_after)
    if config.url is None and not config.local_path.is_file():
        # Reading must not create a store: say where nothing was found.
        if args.run is not None:
            raise ConfigError(f"no run {args.run!r}: no run registry at {config.where}")
        print("[]" if args.json else f"no runs recorded in {config.where}")
        return 0
    registry = open_registry(config)
    now = time.time()
    try:
        if args.run is not None:
            return _show_run(registry, args.run, now, args.json)
        runs = registry.list_runs()
    finally:
        registry.close()
    if args.json:
        out = []
        for run in runs:
            status = run.status_at(now, stale_after)
            record = {**dataclasses.asdict(run), "status": status.value}
            record.update(recorded_status=run.status, heartbeat_age_s=now - run.heartbeat_at)
            out.append(record)
        print(json.dumps(out, indent=2))
        return 0
    if not runs:
        print(f"no runs recorded in {registry.where}")
        return 0
    header = ["RUN ID", "ENV", "MODEL", "STATUS", "STEPS", "BEST EVAL", "LATEST CHECKPOINT",
              "HEARTBEAT"]  # fmt: skip
    _print_table(header, [_run_row(r, r.status_at(now, stale_after), now) for r in runs])
    return 0


def _show_run(registry: RunRegistry, run_id: str, now: float, as_json: bool) -> int:
    run = registry.get_run(run_id)
    if run is None:
        raise ConfigError(f"no run {run_id!r} in the run registry at {registry.where}")
    status = run.status_at(now, registry.config.stale_after_s)
    evaluations = registry.evaluations(run_id)
    if as_json:
        record = {**dataclasses.asdict(run), "status": status.value, "recorded_status": run.status}
        print(json.dumps({"run": record, "evaluations": evaluations}, indent=2))
        return 0
    _print_table(["RUN ID", "ENV", "MODEL", "STATUS", "STEPS", "BEST EVAL", "LATEST CHECKPOINT",
                  "HEARTBEAT"], [_run_row(run, status, now)])  # fmt: skip
    print(f"run directory {run.run_dir}; attempt {run.attempt}; host {run.host} pid {run.pid}")
    if run.error:
        print(f"error: {run.error}")
    if run.warning:
        print(f"warning: {run.warning}")
    rows = [
        [f"{e['env_steps']:,}", str(e.get("attempt", 0)), f"{e['mean']:.2f}", f"{e['std']:.2f}",
         f"{e['max']:.1f}", str(e.get("num_episodes", "")), str(e.get("game", "")),
         str(e.get("seed", "")), "superseded" if e.get("superseded") else ""]
        for e in evaluations
    ]  # fmt: skip
    if rows:
        _print_table(["STEP", "ATTEMPT", "MEAN", "STD", "MAX", "EPISODES", "GAME", "SEED", ""],
                     rows)  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    commands = {"train": _train, "eval": _eval, "report": _report, "runs": _runs}
    commands.update(experiments.COMMANDS)
    try:
        return commands[args.command](args)
    # Raised only by checks and connections made before any Ray actor starts.
    except (ConfigError, RegistryError) as err:
        print(f"dsqn: error: {err}", file=sys.stderr)
        return 2
    except CheckpointError as err:  # the run is recorded as failed, its last checkpoint kept
        print(f"dsqn: error: {err}", file=sys.stderr)
        return 1
    except RunAborted as err:  # a second stop signal; the trainer printed its line
        return err.exit_code
    except KeyboardInterrupt:  # before training started (no checkpoint to save yet)
        print("dsqn: interrupted", file=sys.stderr)
        return exit_code_for(signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main())
