"""``dsqn``: the command line.

    dsqn train --game pong [--model dqn] [--num-env-runners 8] [--T 4] ...   every TrainConfig field
    dsqn train --resume runs/<run-id>                                          continue a run
    dsqn eval CHECKPOINT [--episodes 30] [--epsilon 0.05] [--gif episode.gif]
    dsqn report RUN                                                            PNG plots of a run

Every value is checked before Ray starts; a bad one is a single ``dsqn: error: ...`` line.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from enum import Enum
from typing import Any

from dsqn_rllib.config import ConfigError, TrainConfig
from dsqn_rllib.models import SpikingConfig

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
            nxt = lines[i + 1].strip()
            if nxt.startswith('"""'):
                return nxt.strip('"').strip()
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
        "--resume", default=None, help="continue the run at this checkpoint or run directory"
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
    return parser


def _convert(raw: str, default: Any, name: str) -> Any:
    """A flag's text as the type of the field's default; one-line error otherwise."""
    try:
        if isinstance(default, bool):
            return raw
        if isinstance(default, Enum):
            return raw
        if isinstance(default, tuple):
            return tuple(int(x) for x in str(raw).split(",") if x)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if default is None and name in ("surrogate_alpha", "stop_eval_return"):
            return float(raw)
        if default is None and name == "metrics_port":
            return int(raw)
        return raw
    except ValueError:
        kind = "integers" if isinstance(default, tuple) else type(default).__name__
        raise ConfigError(f"{_flag(name)} expects {kind}, got {raw!r}") from None


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


def _train(args: argparse.Namespace) -> int:
    from dsqn_rllib.train import Trainer

    if args.resume:
        total = int(args.total_steps) if args.total_steps is not None else None
        trainer = Trainer.resume(args.resume, total_steps=total)
    else:
        trainer = Trainer(config_from_args(args))
    summary = trainer.run()
    print(
        f"[{summary.run_id}] done: {summary.env_steps:,} env steps, {summary.updates:,} updates "
        f"in {summary.seconds:,.0f} s; run directory {summary.run_dir}"
    )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from dsqn_rllib.checkpoints import load_network
    from dsqn_rllib.evaluation import EvalConfig, evaluate, record_episode_gif

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
    from dsqn_rllib.report import write_report

    for path in write_report(args.run, args.out):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    commands = {"train": _train, "eval": _eval, "report": _report}
    try:
        return commands[args.command](args)
    except ConfigError as err:  # raised only by checks that run before any Ray actor starts
        print(f"dsqn: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
