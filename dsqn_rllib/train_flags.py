"""``dsqn train``'s flags, derived from ``TrainConfig`` by tyro.

    parse_train_flags(["--game", "breakout", "--T", "4"]) -> TrainFlags(setup, given)

``TrainConfig`` (and the ``SpikingConfig`` it holds) is the one place an option is declared:
its type, default and docstring. tyro (a maintained library) turns them into the flags, their
conversion and ``--help``; this module only tells it how to present them:

- groups: tyro groups flags by nested dataclass, and ``TrainConfig`` is flat (its callers read
  ``cfg.lr``), so each ``# Section`` comment of the config becomes a small dataclass built here
  from the section's fields, with tyro's prefixes off (``--lr``, not ``--learning.lr``);
- values as the paper and the config write them: enums by value (``--readout max-mem``),
  ``--hidden-sizes 32,32`` (or ``32 32``), ``none`` for an optional value;
- one line per parse error: tyro's parse-error hook turns each failure into a
  ``ConfigError`` (``dsqn: error: ...``) instead of its multi-line box. The hook is tyro's
  experimental API (``tyro._errors``), so tyro is pinned to the version tested here.

Which flags were given (not their defaults) is read from the command line: presets and
``--config`` files sit between the defaults and the flags, and ``--resume`` refuses flags that
would not apply.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import re
import typing
from dataclasses import dataclass
from typing import Annotated, Any

import tyro
from tyro import _errors as tyro_errors  # the parse-error hook (experimental: tyro is pinned)
from tyro.constructors import ConstructorRegistry, PrimitiveConstructorSpec, PrimitiveTypeInfo

from dsqn_rllib import presets
from dsqn_rllib.config import TrainConfig
from dsqn_rllib.errors import ConfigError
from dsqn_rllib.snn.networks import SpikingConfig

PROG = "dsqn train"


@dataclass
class RunSetup:
    """where the values come from, or a run to continue"""

    preset: Annotated[
        str | None,
        tyro.conf.arg(
            metavar="{" + ",".join(presets.PRESETS) + "}",
            help="; ".join(f"{k}: {v}" for k, v in presets.PRESET_HELP.items()),
        ),
    ] = None
    config: Annotated[
        str | None,
        tyro.conf.arg(
            metavar="FILE",
            help="options from a TOML or JSON file (field names as keys; a run's "
            "train_config.json works); flags given too win",
        ),
    ] = None
    print_config: Annotated[
        tyro.conf.FlagCreatePairsOff[bool],
        tyro.conf.arg(
            help="print the effective config as TOML (for --config) and exit; starts nothing",
            help_behavior_hint="",
        ),
    ] = False
    resume: Annotated[
        str | None,
        tyro.conf.arg(
            metavar="RUN",
            help="continue a run: its checkpoint or run directory, or its id in the run "
            "registry (its saved config stands; only --total-steps and the registry flags apply)",
        ),
    ] = None


@dataclass(frozen=True)
class TrainFlags:
    """What ``dsqn train``'s command line says."""

    setup: RunSetup
    given: dict[str, Any]
    """The ``TrainConfig`` values given as flags (converted), spiking ones under
    ``"spiking"``: the top layer over the defaults, the preset and the config file."""

    @property
    def given_flags(self) -> list[str]:
        """The config flags given, as written in --help."""
        names = [n for n in self.given if n != "spiking"] + list(self.given["spiking"])
        return [flag(n) for n in names]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class FieldDoc:
    """What the source says of a dataclass field: its section comment and its docstring."""

    section: str
    help: str


@functools.cache
def field_docs(cls: type) -> dict[str, FieldDoc]:
    """The ``# Section`` comment above each field and the docstring under it (tyro reads the
    docstrings itself; the sections, which become --help's groups, only we do)."""
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


# The spiking options' --help group: (name, description); the others come from the sections.
_SPIKING_GROUP = ("spiking_network", "ignored for --model dqn")
# What a text flag holds, by the last word of its name (tyro would say STR).
_TEXT_METAVARS = {"game": "NAME", "env": "ID", "dir": "DIR", "id": "NAME", "url": "URL",
                  "host": "HOST", "prefix": "PREFIX"}  # fmt: skip


def _section(comment: str) -> tuple[str, str]:
    """A section comment as (group name, description): ``Pipeline: sampling and learning
    resources`` -> (``pipeline``, ``sampling and learning resources``)."""
    name, _, rest = re.split(r"(: | \()", comment + " (", maxsplit=1)
    return name.strip().lower().replace(" ", "_"), rest.rstrip(" (").rstrip(")")


def _flag_field(f: dataclasses.Field, hint: Any, doc: str) -> tuple[str, Any, Any]:
    """One dataclass field for tyro: the config's type, default and docstring, and the metavar a
    text flag gets from its name."""
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    options: dict[str, Any] = {"help": doc}
    if "(default" in doc:  # a docstring that explains its default (run_id's) says it best
        options["help_behavior_hint"] = ""
    if str in typing.get_args(hint) or hint is str:
        options["metavar"] = _TEXT_METAVARS.get(f.name.rsplit("_", 1)[-1], "TEXT")
        if type(None) in typing.get_args(hint):
            options["metavar"] += "|none"
    return f.name, Annotated[hint, tyro.conf.arg(**options)], dataclasses.field(default=default)


@functools.cache
def _schema() -> type:
    """The dataclass tyro parses: one nested dataclass per section of TrainConfig (the spiking
    options after the model's), each with tyro's argument prefixes off."""
    sections: dict[str, tuple[str, list[tuple[str, Any, Any]]]] = {}
    for cls in (TrainConfig, SpikingConfig):
        hints = typing.get_type_hints(cls)
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            if f.name == "spiking":  # its own group, right after the model's
                sections[_SPIKING_GROUP[0]] = (_SPIKING_GROUP[1], [])
                continue
            doc = docs[f.name]
            name, title = _SPIKING_GROUP if cls is SpikingConfig else _section(doc.section)
            sections.setdefault(name, (title, []))[1].append(
                _flag_field(f, hints[f.name], doc.help)
            )
    fields: list[tuple[str, Any, Any]] = [
        (
            "run_setup",
            tyro.conf.OmitArgPrefixes[Annotated[RunSetup, tyro.conf.arg(help=RunSetup.__doc__)]],
            dataclasses.field(default_factory=RunSetup),
        )
    ]
    for name, (title, section_fields) in sections.items():
        section = dataclasses.make_dataclass(name.title().replace("_", ""), section_fields)
        section.__doc__ = title
        fields.append(
            (
                name,
                tyro.conf.OmitArgPrefixes[Annotated[section, tyro.conf.arg(help=title or None)]],
                dataclasses.field(default_factory=section),
            )
        )
    return dataclasses.make_dataclass("DsqnTrain", fields)


def _none_rule(type_info: PrimitiveTypeInfo) -> PrimitiveConstructorSpec | None:
    """``none`` (as the help shows it) or ``None`` for an optional value."""
    if type_info.type is not type(None):
        return None
    return PrimitiveConstructorSpec(
        nargs=1,
        metavar="{none}",
        choices=("none", "None"),
        instance_from_str=lambda args: None,
        is_instance=lambda x: x is None,
        str_from_instance=lambda instance: ["none"],
    )


def _int_tuple_rule(type_info: PrimitiveTypeInfo) -> PrimitiveConstructorSpec | None:
    """Layer sizes as ``32,32`` (how the README and configs write them) or ``32 32``."""
    if type_info.type_origin is not tuple or typing.get_args(type_info.type) != (int, ...):
        return None

    def parse(args: list[str]) -> tuple[int, ...]:
        try:
            return tuple(int(x) for arg in args for x in arg.split(",") if x)
        except ValueError:
            raise ValueError(f"expects integers, got {' '.join(args)!r}") from None

    return PrimitiveConstructorSpec(
        nargs="*",
        metavar="N,N,...",
        instance_from_str=parse,
        is_instance=lambda x: isinstance(x, tuple),
        str_from_instance=lambda instance: [",".join(map(str, instance))],
    )


@functools.cache
def _registry() -> ConstructorRegistry:
    registry = ConstructorRegistry()
    registry.primitive_rule(_none_rule)
    registry.primitive_rule(_int_tuple_rule)
    return registry


def _one_line(event: Any, known_flags: list[str]) -> str:
    """A tyro parse-error event as one line: the flag, the value, what is allowed."""
    if isinstance(event, tyro_errors.UnrecognizedArgs):
        unknown = next((t for t in event.tokens if t.startswith("-")), event.tokens[0])
        close = difflib.get_close_matches(unknown.split("=")[0], known_flags, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"unrecognized arguments: {' '.join(event.tokens)}{hint}"
    argument = getattr(event, "argument", None)
    name = argument.display_name() if argument is not None else "a flag"
    if isinstance(event, tyro_errors.InvalidChoice):
        choices = [c for c in event.choices if c != "None"]
        close = difflib.get_close_matches(event.value, choices, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"{name} {event.value!r} is not allowed{hint}; allowed: {', '.join(choices)}"
    if isinstance(event, tyro_errors.BadValue):  # too few values, or one for a fixed flag
        if event.offending_value is not None:
            return f"{name} takes no value, got {event.offending_value!r}"
        return f"{name} expects a value ({argument.lowered.metavar})"
    if isinstance(event, tyro_errors.InstantiationFailure):
        return f"{name} {_plain_conversion_error(event.message, argument)}"
    return f"cannot read the command line ({type(event).__name__})"


def _plain_conversion_error(message: str, argument: Any) -> str:
    """``invalid literal for int() with base 10: 'eight'`` -> ``expects int, got 'eight'``."""
    got = re.search(r": ('.*')$", message)
    if got is None:
        return message
    metavar = str(argument.lowered.metavar) if argument is not None else ""
    kind = next((k for k in ("INT", "FLOAT") if k in metavar), None)
    return f"expects {kind.lower() if kind else metavar}, got {got.group(1)}"


class _ParseError(Exception):
    """Raised by the hook to take over from tyro's error box."""


@functools.cache
def _flag_names() -> dict[str, str]:
    """Every flag tyro accepts for a config field (``--x``, ``--no-x`` for a switch), with
    ``_`` written as ``-``, -> the field's name."""
    names: dict[str, str] = {}
    hints = {**typing.get_type_hints(SpikingConfig), **typing.get_type_hints(TrainConfig)}
    for cls in (TrainConfig, SpikingConfig):
        for f in dataclasses.fields(cls):
            if f.name == "spiking":
                continue
            names[flag(f.name)] = f.name
            if hints[f.name] is bool:
                names["--no-" + f.name.replace("_", "-")] = f.name
    return names


def _given_names(argv: list[str]) -> list[str]:
    """The config fields the command line names (a flag given with its default value is
    still given: it must win over a preset and a config file)."""
    known = _flag_names()
    out = []
    for token in argv:
        if token == "--":
            break
        key = token.split("=", 1)[0].replace("_", "-")
        if token.startswith("--") and key in known and known[key] not in out:
            out.append(known[key])
    return out


def parse_train_flags(argv: list[str]) -> TrainFlags:
    """``dsqn train``'s arguments (without ``train``): the run set-up and the config values
    given. ``ConfigError`` (one line) on a bad flag; ``SystemExit(0)`` after ``--help``."""

    def take_over(event: Any) -> None:
        raise _ParseError(_one_line(event, [*_flag_names(), "--preset", "--config",
                                           "--print-config", "--resume"]))  # fmt: skip

    try:
        with tyro_errors.on_parse_error(take_over):
            parsed = tyro.cli(
                _schema(),
                prog=PROG,
                description=_DESCRIPTION,
                args=argv,
                config=(tyro.conf.EnumChoicesFromValues,),
                registry=_registry(),
            )
    except _ParseError as err:
        raise ConfigError(f"{err}; see {PROG} --help") from None
    values = {
        f.name: getattr(section, f.name)
        for section in vars(parsed).values()
        if not isinstance(section, RunSetup)
        for f in dataclasses.fields(section)
    }
    spiking_names = {f.name for f in dataclasses.fields(SpikingConfig)}
    given: dict[str, Any] = {"spiking": {}}
    for name in _given_names(argv):
        (given["spiking"] if name in spiking_names else given)[name] = values[name]
    if "game" in given and "env" in given:
        raise ConfigError("--game and --env exclude each other: give one (--env for a vector env)")
    return TrainFlags(setup=parsed.run_setup, given=given)


_DESCRIPTION = (
    "Train a DSQN (or its DQN twin). Values come from the paper's defaults, then --preset, "
    "then --config FILE, then the flags; all are checked before Ray starts. "
    "To continue a run: dsqn train --resume RUN [--total-steps N]."
)
