"""Named set-ups of ``dsqn train`` and config files (TOML or JSON) of its options.

    dsqn train --preset laptop                         # learns CartPole in minutes on 2 cores
    dsqn train --preset laptop --print-config > my.toml  # the effective config, as TOML
    dsqn train --config my.toml --seed 1               # a file, then flags on top

Precedence, lowest first: the paper's defaults (``TrainConfig``), the preset, the config file,
the flags. A config file holds ``TrainConfig`` field names as keys (the flags without ``--``,
with ``_``), spiking options flat or in a ``[spiking]`` table; a run's own
``train_config.json`` is a config file too (``--config runs/<run>/train_config.json``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import sys
from enum import Enum
from pathlib import Path
from typing import Any

from dsqn_rllib.config import TrainConfig
from dsqn_rllib.errors import ConfigError
from dsqn_rllib.snn.networks import SpikingConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover (3.10: the same parser, as a package)
    import tomli as tomllib

PRESETS: dict[str, dict[str, Any]] = {
    # The authors' code as it is: TrainConfig's defaults (Pong, 20M steps; ~33 days on 2 cores).
    "paper": {},
    # The spiking MLP (DSQN's neurons, max-mem readout, T=8) through the whole pipeline, with
    # RL Baselines3 Zoo's CartPole DQN settings. Measured on 2 CPU cores (README): the greedy
    # evaluation reaches 500 (the cap) at ~32k env steps, ~6 minutes; stops at 475.
    "laptop": {
        "env": "CartPole-v1",
        "num_env_runners": 1,
        "envs_per_runner": 4,
        "hidden_sizes": (256, 256),
        "lr": 2.3e-3,
        "adam_eps": 1e-8,
        "grad_clip": 10.0,
        "train_batch_size": 64,
        "train_every": 2,
        "buffer_size": 100_000,
        "learning_starts": 1_000,
        "target_update_period": 10,
        "loss": "huber",
        "epsilon_decay_steps": 8_000,
        "epsilon_end": 0.04,
        "eval_interval": 4_000,
        "eval_episodes": 20,
        "eval_epsilon": 0.0,
        "checkpoint_interval": 10_000,
        "total_steps": 60_000,
        "stop_eval_return": 475.0,
        "spiking": {"T": 8},
    },
    # Checks an install end to end in about a minute (2,000 steps, a few hundred updates on a
    # small spiking MLP): no learning to speak of, every part of the pipeline once.
    "smoke": {
        "env": "CartPole-v1",
        "num_env_runners": 0,
        "envs_per_runner": 4,
        "hidden_sizes": (32, 32),
        "train_batch_size": 32,
        "train_every": 4,
        "buffer_size": 5_000,
        "learning_starts": 500,
        "target_update_period": 500,
        "eval_interval": 2_000,  # one evaluation, at the end
        "eval_episodes": 5,
        "checkpoint_interval": 1_000,
        "total_steps": 2_000,
        "spiking": {"T": 2},
    },
}
"""``--preset NAME``: TrainConfig values over the paper's defaults."""

PRESET_HELP = {
    "paper": "the authors' settings: Pong, 20M steps (weeks on a CPU; a GPU node and runners)",
    "laptop": "spiking MLP on CartPole-v1, greedy return 500 in ~6 min on 2 cores",
    "smoke": "a 2,000-step CartPole run (~1 min) that exercises the whole pipeline",
}

_TRAIN_NAMES = {f.name for f in dataclasses.fields(TrainConfig)} - {"spiking"}
_SPIKING_NAMES = {f.name for f in dataclasses.fields(SpikingConfig)}


def preset_values(name: str) -> dict[str, Any]:
    """The values of preset ``name`` (a copy); one-line ConfigError for an unknown name."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, list(PRESETS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"unknown preset {name!r}{hint}; allowed: {', '.join(PRESETS)}")
    values = dict(PRESETS[name])
    values["spiking"] = dict(values.get("spiking", {}))
    return values


def load_config_file(path: str | Path) -> dict[str, Any]:
    """TrainConfig values from a TOML or JSON file: ``{field: value, "spiking": {...}}``.
    Unknown keys, unreadable files and bad syntax are one-line ConfigErrors."""
    file = Path(path).expanduser()
    try:
        text = file.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read --config {str(file)!r}: {err.strerror or err}") from None
    try:
        data = json.loads(text) if file.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        kind = "JSON" if file.suffix == ".json" else "TOML"
        raise ConfigError(f"--config {file} is not valid {kind}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {file} must hold a table of options, got {type(data)}")
    values: dict[str, Any] = {"spiking": {}}
    for key, value in data.items():
        if key == "spiking" and isinstance(value, dict):
            for name, option in value.items():
                _place(values, str(name), option, file, spiking_only=True)
        else:
            _place(values, str(key), value, file)
    return values


def _place(
    values: dict[str, Any], key: str, value: Any, file: Path, spiking_only: bool = False
) -> None:
    name = key.replace("-", "_")
    if name in _SPIKING_NAMES:
        values["spiking"][name] = value
    elif name in _TRAIN_NAMES and not spiking_only:
        values[name] = tuple(value) if name == "hidden_sizes" and isinstance(value, list) else value
    else:
        names = sorted(_SPIKING_NAMES if spiking_only else _TRAIN_NAMES | _SPIKING_NAMES)
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"--config {file}: unknown option {key!r}{hint}")


def merge(*layers: dict[str, Any]) -> dict[str, Any]:
    """Later layers win; their ``spiking`` tables are merged key by key."""
    out: dict[str, Any] = {"spiking": {}}
    for layer in layers:
        # A layer that names a game (or an env) replaces the other of any layer below it.
        if layer.get("game") is not None and "env" not in layer:
            out["env"] = None
        if layer.get("env") is not None and "game" not in layer:
            out["game"] = None
        for key, value in layer.items():
            if key == "spiking":
                out["spiking"].update(value)
            else:
                out[key] = value
    return out


def build_config(values: dict[str, Any]) -> TrainConfig:
    """A validated TrainConfig from merged values (ConfigError on the first bad one)."""
    values = dict(values)
    spiking = values.pop("spiking", {}) or {}
    if values.get("env") is not None and "game" not in values:
        values["game"] = None  # --env replaces the default game
    try:
        cfg = TrainConfig(**values)
    except TypeError as err:  # a misspelt name reaching here is a bug of ours, still one line
        raise ConfigError(str(err)) from None
    if spiking:
        cfg = cfg.with_spiking(**spiking)
    return cfg.validate()


def _toml_value(value: Any) -> str | None:
    if value is None:
        return None  # TOML has no null: the default (None) stands
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return repr(value) if isinstance(value, float) else f"{value:_}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(_toml_value(v)) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string is a JSON string


def to_toml(cfg: TrainConfig) -> str:
    """The whole config as a TOML file ``--config`` reads back (None values are left out:
    they are the defaults)."""
    data = cfg.to_dict()
    spiking = data.pop("spiking")
    lines = ["# dsqn train --config FILE (TrainConfig; flags given with it win)"]
    for key, value in data.items():
        text = _toml_value(value)
        lines.append(f"{key} = {text}" if text is not None else f"# {key} = (none)")
    lines += ["", "[spiking]"]
    for key, value in spiking.items():
        text = _toml_value(value)
        lines.append(f"{key} = {text}" if text is not None else f"# {key} = (default)")
    return "\n".join(lines) + "\n"


def differences(cfg: TrainConfig) -> dict[str, Any]:
    """``cfg``'s values that differ from the paper's defaults, flat (spiking options too)."""
    data, paper = cfg.to_dict(), TrainConfig().to_dict()
    if data["env"] is not None:
        paper["game"] = None  # an env replaces the game: not a difference of its own
    out = {k: v for k, v in data.items() if k != "spiking" and v != paper.get(k)}
    out.update({k: v for k, v in data["spiking"].items() if v != paper["spiking"].get(k)})
    return out
