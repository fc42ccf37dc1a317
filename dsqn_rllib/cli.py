"""``dsqn``: the command line.

    dsqn train --game pong [--model dqn] [--num-env-runners 8] [--T 4] ...   every TrainConfig field
    dsqn train --resume runs/<run-id>                                          continue a run
    dsqn train --resume RUN_ID                                  continue a run of the run registry
    dsqn runs [RUN_ID] [--registry-url redis://host:6379/0] [--json]   the registry's runs
    dsqn eval CHECKPOINT [--episodes 30] [--epsilon 0.05] [--gif episode.gif]
    dsqn report RUN [RUN ...] [--out DIR] [--raster]      PNG plots: curves, overlays, spike raster

Every value is checked before Ray starts; a bad one is a single ``dsqn: error: ...`` line.
``dsqn train`` exits 0 when done, 130 / 143 when SIGINT / SIGTERM stopped it (checkpoint saved,
the resume command printed), 1 when a checkpoint could not be written, 2 on a bad value.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import functools
import json
import math
import os
import re
import shutil
import signal
import sys
import time
import typing
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
from dsqn_rllib.snn.networks import SpikingConfig

_SPIKING_FIELDS = list(dataclasses.fields(SpikingConfig))
_TRAIN_FIELDS = [f for f in dataclasses.fields(TrainConfig) if f.name != "spiking"]
# With --resume the run's saved config stands; these flags only say how to find and extend it.
_RESUME_FLAGS = {"total_steps", "registry_url", "registry_prefix", "run_dir"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclasses.dataclass(frozen=True)
class FieldDoc:
    """What the source says of a dataclass field: its section comment and its docstring."""

    section: str
    help: str


@functools.cache
def field_docs(cls: type) -> dict[str, FieldDoc]:
    """The ``# Section`` comment above each field and the docstring under it (the dataclass's
    source is the CLI's documentation: one place to write it)."""
    import inspect

    try:
        lines = inspect.getsource(cls).splitlines()
    except OSError:
        return {}
    docs: dict[str, FieldDoc] = {}
    section, i = "", 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if indent == 4 and stripped.startswith("# ") and not stripped.startswith("# --"):
            section = stripped[2:]
        match = re.match(r"    (\w+): .+", line)
        if match and not stripped.startswith(('"""', "#")):
            text: list[str] = []
            if i + 1 < len(lines) and lines[i + 1].strip().startswith('"""'):
                for nxt in lines[i + 1 :]:  # a docstring may run over several lines
                    text.append(nxt.strip())
                    i += 1
                    if nxt.rstrip().endswith('"""') and (len(text) > 1 or nxt.count('"""') == 2):
                        break
            docs[match.group(1)] = FieldDoc(section, " ".join(text).strip('"').strip())
        i += 1
    return docs


def _kind(cls: type, name: str) -> tuple[type, list[str] | None, bool]:
    """(value type, allowed values or None, optional) of a field, from its annotation."""
    hint = typing.get_type_hints(cls)[name]
    optional = False
    args = typing.get_args(hint)
    if type(None) in args:  # X | None
        optional = True
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is typing.Literal:
        return str, [str(a) for a in typing.get_args(hint)], optional
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint, [m.value for m in hint], optional
    if typing.get_origin(hint) is tuple:
        return tuple, None, optional
    return (hint if isinstance(hint, type) else str), None, optional


def _shown(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:_}"
    return str(value)


def _add_field(group: Any, cls: type, field: dataclasses.Field, default: Any) -> None:
    """One flag per field: its docstring, its choices and its default in the help."""
    flag = _flag(field.name)
    kind, choices, optional = _kind(cls, field.name)
    doc = field_docs(cls).get(field.name, FieldDoc("", "")).help
    shown = "none" if default is None else _shown(default)
    # A docstring that explains its default (run_id's <model>-<game>-<time>) says it best.
    helptext = doc if "(default" in doc else f"{doc} [default: {shown}]".strip()
    helptext = helptext.replace("%", "%%")
    if kind is bool:
        group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=helptext)
        return
    if choices is not None:
        metavar = "{" + ",".join(choices) + "}"
    else:
        metavar = {int: "N", float: "X", tuple: "N,N,..."}.get(kind) or _TEXT_METAVARS.get(
            field.name.rsplit("_", 1)[-1], "TEXT"
        )
        if optional and kind in (int, float):
            metavar += "|none"
    # Values stay text here and are converted and checked by us: one line, the config's words.
    group.add_argument(flag, default=None, metavar=metavar, help=helptext)


# What a text flag holds, by the last word of its name.
_TEXT_METAVARS = {"game": "NAME", "env": "ID", "dir": "DIR", "id": "NAME", "url": "URL",
                  "host": "HOST", "prefix": "PREFIX"}  # fmt: skip


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


def _formatter(prog: str) -> argparse.HelpFormatter:
    width = min(shutil.get_terminal_size().columns, 110)
    return argparse.HelpFormatter(prog, max_help_position=34, width=width)


def add_train_parser(sub: Any) -> argparse.ArgumentParser:
    """``dsqn train``: every TrainConfig field as a flag, grouped by the config's sections."""
    train = sub.add_parser(
        "train",
        help="train DSQN (or the DQN twin) with the paper's defaults",
        usage="dsqn train [--preset NAME] [--config FILE] [OPTIONS]\n"
        "       dsqn train --resume RUN [--total-steps N]",
        description="Train a DSQN (or its DQN twin). Values come from the paper's defaults, "
        "then --preset, then --config FILE, then the flags; all are checked before Ray starts.",
        formatter_class=_formatter,
        # No prefixes: --learning-start must not quietly mean --learning-starts.
        allow_abbrev=False,
    )
    setup = train.add_argument_group("run set-up")
    setup.add_argument(
        "--preset",
        default=None,
        metavar="{" + ",".join(presets.PRESETS) + "}",
        help="; ".join(f"{k}: {v}" for k, v in presets.PRESET_HELP.items()),
    )
    setup.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="options from a TOML or JSON file (field names as keys; a run's "
        "train_config.json works); flags given too win",
    )
    setup.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective config as TOML (for --config) and exit; starts nothing",
    )
    setup.add_argument(
        "--resume",
        default=None,
        metavar="RUN",
        help="continue a run: its checkpoint or run directory, or its id in the run registry "
        "(its saved config stands; only --total-steps and the registry flags apply)",
    )
    defaults = TrainConfig()
    docs = field_docs(TrainConfig)
    groups: dict[str, Any] = {}
    for f in _TRAIN_FIELDS:
        section = docs.get(f.name, FieldDoc("options", "")).section or "options"
        if section not in groups:
            groups[section] = train.add_argument_group(section[0].lower() + section[1:])
        _add_field(groups[section], TrainConfig, f, getattr(defaults, f.name))
        if f.name == "api_stack":  # the spiking options right after the model's
            spiking = train.add_argument_group("spiking network (ignored for --model dqn)")
            for sf in _SPIKING_FIELDS:
                _add_field(spiking, SpikingConfig, sf, getattr(defaults.spiking, sf.name))
    return train


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dsqn", description="Deep Spiking Q-Networks on Atari with Ray RLlib")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)

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


def _convert(raw: str, default: Any, name: str, cls: type = TrainConfig) -> Any:
    """A flag's text as its field's type (``none`` for an optional one); one line otherwise."""
    try:
        kind, choices, optional = _kind(cls, name)
    except KeyError:  # not a field (--stale-after): the type of the default
        kind, choices, optional = type(default), None, False
    if optional and str(raw).lower() == "none":
        return None
    try:
        if kind is bool or choices is not None or issubclass(kind, Enum):
            return raw  # checked, with the allowed values, by the config
        if kind is tuple:
            return tuple(int(x) for x in str(raw).split(",") if x)
        if kind in (int, float):
            return kind(raw)
        return raw
    except ValueError:
        expected = "integers" if kind is tuple else kind.__name__
        raise ConfigError(f"{_flag(name)} expects {expected}, got {raw!r}") from None


def _flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig values given as flags (not the defaults), converted."""
    values: dict[str, Any] = {"spiking": {}}
    for f in _TRAIN_FIELDS:
        raw = getattr(args, f.name, None)
        if raw is not None:
            values[f.name] = _convert(raw, None, f.name)
    for f in _SPIKING_FIELDS:
        raw = getattr(args, f.name, None)
        if raw is not None:
            values["spiking"][f.name] = _convert(raw, None, f.name, SpikingConfig)
    if "game" in values and "env" in values:
        raise ConfigError("--game and --env exclude each other: give one (--env for a vector env)")
    return values


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig from the paper's defaults, --preset, --config and the flags (in that order),
    validated (ConfigError on the first bad value)."""
    layers = []
    if getattr(args, "preset", None):
        layers.append(presets.preset_values(args.preset))
    if getattr(args, "config", None):
        layers.append(presets.load_config_file(args.config))
    layers.append(_flag_values(args))
    return presets.build_config(presets.merge(*layers))


def _registry_config(args: argparse.Namespace, **options: Any) -> RegistryConfig:
    """The registry the flags (or $DSQN_REDIS_URL, or the local store in --run-dir) name."""
    return RegistryConfig.resolve(
        args.registry_url, args.registry_prefix, run_root=args.run_dir or "runs", **options
    )


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


def _resume_target(args: argparse.Namespace) -> tuple[Path, RunRegistry | None]:
    """--resume names a checkpoint or run directory, or a run id of the registry."""
    raw = str(args.resume)
    path = Path(raw).expanduser()
    if path.exists() or os.sep in raw or raw.startswith((".", "~")):
        # A path: the run keeps its own registry unless a flag names another one.
        named = args.registry_url is not None or args.registry_prefix is not None
        return path, _open_registry(_registry_config(args)) if named else None
    config = _registry_config(args)
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


def _train(args: argparse.Namespace) -> int:
    from dsqn_rllib.ops.preflight import preflight

    if args.resume is not None:
        return _resume(args)
    cfg = config_from_args(args)
    if args.print_config:
        print(presets.to_toml(cfg), end="")
        return 0
    _check_new_run(cfg)
    # Memory, learner device, metrics port, before Ray starts and before anything is opened
    # (Trainer makes the same checks for users of the Python API unless told they are made).
    preflight(cfg)
    _say_config(cfg, args.preset)
    from dsqn_rllib.run import Trainer

    return _finish(Trainer(cfg, checked=True).run())


def _resume(args: argparse.Namespace) -> int:
    """``--resume RUN``: every check (the checkpoint's files, the machine) before Ray starts;
    a refused resume writes nothing, so the run stays as it was."""
    from dsqn_rllib.ops.checkpoints import check_resumable, read_checkpoint
    from dsqn_rllib.ops.preflight import preflight

    if not str(args.resume).strip():
        raise ConfigError(
            "--resume needs a run directory, a checkpoint or a run id of the run registry, got ''"
        )
    ignored = [
        _flag(f.name)
        for f in (*_TRAIN_FIELDS, *_SPIKING_FIELDS)
        if getattr(args, f.name, None) is not None and f.name not in _RESUME_FLAGS
    ]
    ignored += [flag for flag in ("--preset", "--config") if getattr(args, flag[2:]) is not None]
    if ignored or args.print_config:
        ignored += ["--print-config"] if args.print_config else []
        raise ConfigError(
            f"--resume continues the run with its saved config: {', '.join(ignored)} cannot "
            f"change it (with --resume: --total-steps, --registry-url, --registry-prefix, "
            f"--run-dir); to train with other values start a new run, e.g. --config "
            f"<run>/train_config.json with your flags and a new --run-id"
        )
    total = None
    if args.total_steps is not None:
        total = _convert(args.total_steps, None, "total_steps")
    path, registry = _resume_target(args)
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
        stale_after = _convert(args.stale_after, 1.0, "stale_after")
    config = _registry_config(args, stale_after_s=stale_after)
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
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, or a usage error already said in one line
        return done.code if isinstance(done.code, int) else 2
    commands = {"train": _train, "eval": _eval, "report": _report, "runs": _runs}
    commands.update(experiments.COMMANDS)
    try:
        return commands[args.command](args)
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
