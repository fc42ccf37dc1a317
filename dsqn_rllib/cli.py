"""``dsqn``: the command line.

    dsqn train --game pong [--model dqn] [--num-env-runners 8] [--T 4] ...   every TrainConfig field
    dsqn train --resume runs/<run-id>                                          continue a run
    dsqn train --resume RUN_ID                                  continue a run of the run registry
    dsqn runs [RUN_ID] [--registry-url redis://host:6379/0] [--json]   the registry's runs
    dsqn eval CHECKPOINT [--episodes 30] [--epsilon 0.05] [--gif episode.gif]
    dsqn report RUN [RUN ...] [--out DIR] [--raster]      PNG plots: curves, overlays, spike raster

``train``'s flags are ``TrainConfig``'s, derived by tyro (``train_flags``); the other commands'
are argparse. Every value is checked before Ray starts; a bad one is a single
``dsqn: error: ...`` line.
``dsqn train`` exits 0 when done, 130 / 143 when SIGINT / SIGTERM stopped it (checkpoint saved,
the resume command printed), 1 when a checkpoint could not be written, 2 on a bad value.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import json
import math
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn

from dsqn_rllib import experiments, presets
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
    outbox_dir,
)
from dsqn_rllib.ops.stopping import RunAborted, exit_code_for
from dsqn_rllib.train_flags import TrainFlags, flag, parse_train_flags

# With --resume the run's saved config stands; these flags only say how to find and extend it.
_RESUME_FLAGS = {"total_steps", "registry_url", "registry_prefix", "run_dir"}


def _shown(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:_}"
    return str(value)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (``dsqn: error: ...``, exit 2), with
    the closest flag for a misspelt one."""

    def error(self, message: str) -> NoReturn:
        unknown = re.match(r"unrecognized arguments: (\S+)", message)
        if unknown:
            flags = [o for a in self._actions for o in a.option_strings]
            for sub in self._subparsers._group_actions if self._subparsers else []:
                for parser in getattr(sub, "choices", {}).values():
                    flags += [o for a in parser._actions for o in a.option_strings]
            close = difflib.get_close_matches(unknown.group(1).split("=")[0], flags, n=1)
            if close:
                message += f" (did you mean {close[0]}?)"
        self.exit(2, f"dsqn: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dsqn", description="Deep Spiking Q-Networks on Atari with Ray RLlib")
    sub = parser.add_subparsers(dest="command", required=True)
    # Listed here for `dsqn --help`; its flags are parsed by tyro (train_flags), see main().
    sub.add_parser(
        "train",
        help="train DSQN (or the DQN twin) with the paper's defaults (dsqn train --help)",
        add_help=False,
    )

    ev = sub.add_parser("eval", help="evaluate a checkpoint with the paper's protocol")
    ev.add_argument("checkpoint", help="checkpoint directory or run directory (uses its latest)")
    ev.add_argument("--episodes", type=int, default=30)
    ev.add_argument("--epsilon", type=float, default=0.05)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--max-episode-frames", type=int, default=108_000)
    ev.add_argument("--gif", default=None, help="also record one episode to this GIF file")

    rep = sub.add_parser(
        "report", help="PNG plots of runs: training curves, several runs overlaid, a spike raster"
    )
    rep.add_argument("run", nargs="+", help="run directories (runs/<run-id>); several are overlaid")
    rep.add_argument(
        "--out",
        default=None,
        help="folder for the PNGs (default: the run directory; needed for several runs)",
    )
    rep.add_argument(
        "--raster",
        action="store_true",
        help="also spike_raster.png: one real observation through each LIF layer over T steps",
    )
    rep.add_argument(
        "--raster-neurons", type=int, default=64, help="neurons drawn per layer [default: 64]"
    )
    rep.add_argument(
        "--raster-seed",
        type=int,
        default=0,
        help="seed of the observation and of the neuron sample [default: 0]",
    )

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


def config_from_flags(flags: TrainFlags) -> TrainConfig:
    """TrainConfig from the paper's defaults, --preset, --config and the flags (in that order),
    validated (ConfigError on the first bad value)."""
    layers = []
    if flags.setup.preset:
        layers.append(presets.preset_values(flags.setup.preset))
    if flags.setup.config:
        layers.append(presets.load_config_file(flags.setup.config))
    layers.append(flags.given)
    return presets.build_config(presets.merge(*layers))


def _registry_config(
    url: str | None, prefix: str | None, run_dir: str | None, **options: Any
) -> RegistryConfig:
    """The registry the flags (or $DSQN_REDIS_URL, or the local store in --run-dir) name."""
    return RegistryConfig.resolve(url, prefix, run_root=run_dir or "runs", **options)


def _open_registry(config: RegistryConfig) -> RunRegistry:
    """open_registry, saying which deferred final records it wrote (see defer_record)."""
    registry = open_registry(config)
    for run_id in registry.flushed:
        print(
            f"dsqn: wrote the final record of run {run_id} to the run registry at "
            f"{registry.where} (kept in {outbox_dir(config)} while it was unreachable)",
            file=sys.stderr,
        )
    return registry


def _resume_target(flags: TrainFlags) -> tuple[Path, RunRegistry | None]:
    """--resume names a checkpoint or run directory, or a run id of the registry."""
    raw = str(flags.setup.resume)
    path = Path(raw).expanduser()
    is_path = path.exists() or os.sep in raw or raw.startswith((".", "~"))
    url, prefix = flags.given.get("registry_url"), flags.given.get("registry_prefix")
    if is_path and url is None and prefix is None:
        return path, None  # a path: the run keeps its own registry unless a flag names another
    config = _registry_config(url, prefix, flags.given.get("run_dir"))
    if is_path:
        return path, _open_registry(config)
    if config.url is None and not config.local_path.is_file():
        raise ConfigError(
            f"no run {raw!r}: no such directory, and no run registry at {config.where} "
            f"(for Redis give --registry-url or set DSQN_REDIS_URL)"
        )
    registry = _open_registry(config)
    record = registry.get_run(raw)
    if record is None:
        raise ConfigError(
            f"no run {raw!r} in the run registry at {registry.where} (nor a directory of that name)"
        )
    return Path(record.run_dir), registry


def _train(argv: list[str]) -> int:
    from dsqn_rllib.ops.preflight import preflight

    try:
        flags = parse_train_flags(argv)
    except SystemExit as done:  # after --help
        return done.code if isinstance(done.code, int) else 0
    if flags.setup.resume is not None:
        return _resume(flags)
    cfg = config_from_flags(flags)
    if flags.setup.print_config:
        print(presets.to_toml(cfg), end="")
        return 0
    _check_new_run(cfg)
    # Memory, learner device, metrics port, before Ray starts and before anything is opened
    # (Trainer makes the same checks for users of the Python API unless told they are made).
    preflight(cfg)
    _say_config(cfg, flags.setup.preset)
    from dsqn_rllib.run import Trainer

    return _finish(Trainer(cfg, checked=True).run())


def _resume(flags: TrainFlags) -> int:
    """``--resume RUN``: every check (the checkpoint's files, the machine) before Ray starts;
    a refused resume writes nothing, so the run stays as it was."""
    from dsqn_rllib.ops.checkpoints import check_resumable, read_checkpoint
    from dsqn_rllib.ops.preflight import preflight

    setup = flags.setup
    if not str(setup.resume).strip():
        raise ConfigError(
            "--resume needs a run directory, a checkpoint or a run id of the run registry, got ''"
        )
    resume_flags = {flag(name) for name in _RESUME_FLAGS}
    ignored = [given for given in flags.given_flags if given not in resume_flags]
    ignored += [f"--{name}" for name in ("preset", "config") if getattr(setup, name) is not None]
    ignored += ["--print-config"] if setup.print_config else []
    if ignored:
        raise ConfigError(
            f"--resume continues the run with its saved config: {', '.join(ignored)} cannot "
            f"change it (with --resume: --total-steps, --registry-url, --registry-prefix, "
            f"--run-dir); to train with other values start a new run, e.g. --config "
            f"<run>/train_config.json with your flags and a new --run-id"
        )
    total = flags.given.get("total_steps")
    path, registry = _resume_target(flags)
    ckpt, cfg, progress = read_checkpoint(path)
    check_resumable(ckpt, cfg)
    done = int(progress.get("env_steps", 0))
    if total is not None and total <= done:
        raise ConfigError(
            f"--total-steps {total:,} is not past the {done:,} env steps the checkpoint "
            f"{ckpt} has done: nothing to train; give more steps"
        )
    if total is not None:
        cfg = dataclasses.replace(cfg, total_steps=total)
    preflight(cfg)
    from dsqn_rllib.run import Trainer

    trainer = Trainer.resume(path, total_steps=total, registry=registry, checked=True)
    return _finish(trainer.run())


def _finish(summary: Any) -> int:
    if summary.stopped_by is not None:
        return summary.exit_code  # the trainer printed where the checkpoint is and how to resume
    print(
        f"[{summary.run_id}] done: {summary.env_steps:,} env steps, {summary.updates:,} updates "
        f"in {summary.seconds:,.0f} s; run directory {summary.run_dir}"
    )
    return 0


def _check_new_run(cfg: TrainConfig) -> None:
    """A new run never writes into the directory of an earlier one (its checkpoints would be
    replaced): a named run whose directory holds a run is refused."""
    if cfg.run_id is None:
        return
    run_dir = Path(cfg.run_dir).expanduser() / cfg.run_id
    if (run_dir / "train_config.json").is_file() or (run_dir / "checkpoints").is_dir():
        raise ConfigError(
            f"run directory {run_dir} already holds run {cfg.run_id!r}: continue it with "
            f"dsqn train --resume {run_dir}, or give another --run-id"
        )


def _say_config(cfg: TrainConfig, preset: str | None) -> None:
    """The effective config in one line (what differs from the paper's), and its notes."""
    changed = presets.differences(cfg)
    shown = " ".join(f"{k}={_shown(tuple(v) if isinstance(v, list) else v)}"
                     for k, v in changed.items())  # fmt: skip
    origin = f"preset {preset}" if preset else "the paper's defaults"
    print(
        f"dsqn: config ({origin}"
        + (f"; changed: {shown}" if shown else "")
        + "); all values: dsqn train ... --print-config, and train_config.json in the run "
        "directory",
        flush=True,
    )
    for note in cfg.notes():
        print(f"dsqn: note: {note}", flush=True)


def _eval(args: argparse.Namespace) -> int:
    from dsqn_rllib.evaluation.protocol import (
        EvalConfig,
        check_gif_target,
        evaluate,
        record_episode_gif,
    )
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
    if args.gif:  # before minutes of evaluation, not after them
        check_gif_target(env, args.gif)  # type: ignore[arg-type]
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
    from dsqn_rllib.evaluation.report import write_reports

    if args.out is not None:
        check_writable_dir(args.out, "--out")
    if args.raster_neurons < 1:
        raise ConfigError(f"--raster-neurons must be >= 1, got {args.raster_neurons}")
    try:
        paths = write_reports(
            args.run,
            args.out,
            raster=args.raster,
            raster_neurons=args.raster_neurons,
            raster_seed=args.raster_seed,
        )
    except OSError as err:  # the folder went away or filled up while plotting
        raise ConfigError(f"cannot write the report: {err.strerror or err}") from None
    for path in paths:
        print(f"wrote {path}")
    return 0


def check_writable_dir(folder: str | Path, what: str) -> Path:
    """Create ``folder`` if needed and check that files can be written in it (one line)."""
    path = Path(folder).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"{what} {str(path)!r}: cannot create it: {err.strerror or err}"
        ) from None
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {str(path)!r}: not a writable folder")
    return path


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
        try:
            stale_after = float(args.stale_after)
        except ValueError:
            raise ConfigError(f"--stale-after expects float, got {args.stale_after!r}") from None
    config = _registry_config(
        args.registry_url, args.registry_prefix, args.run_dir, stale_after_s=stale_after
    )
    if config.url is None and not config.local_path.is_file():
        # Reading must not create a store: say where nothing was found.
        if args.run is not None:
            raise ConfigError(f"no run {args.run!r}: no run registry at {config.where}")
        print("[]" if args.json else f"no runs recorded in {config.where}")
        return 0
    registry = _open_registry(config)
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
    argv = sys.argv[1:] if argv is None else list(argv)
    commands: dict[str, Callable[[Any], int]] = {"eval": _eval, "report": _report, "runs": _runs}
    commands.update(experiments.COMMANDS)
    try:
        if argv[:1] == ["train"]:  # train's flags are TrainConfig's, parsed by tyro
            command, args = _train, argv[1:]
        else:
            args = build_parser().parse_args(argv)
            command = commands[args.command]
    except SystemExit as done:  # --help, or a usage error already said in one line
        return done.code if isinstance(done.code, int) else 2
    try:
        return command(args)
    except BrokenPipeError:
        # `dsqn runs | head`: the reader has what it wanted. Nothing more goes to the closed
        # pipe (Python would complain on exit) and the exit is a pipe's, as in C tools.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
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
