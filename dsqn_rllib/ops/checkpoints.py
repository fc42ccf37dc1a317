"""Checkpoint layout. A ``dsqn train`` checkpoint (``checkpoints/latest``) on the new API stack
is an RLlib Algorithm checkpoint with the project's files beside RLlib's:

    <checkpoint>/
        train_config.json   the TrainConfig of the run
        progress.json       env steps, updates, episodes, evaluation history, run id
        model.pt            the online Q-network's state_dict (what acting needs)
        rllib_checkpoint.json, class_and_ctor_args.pkl, algorithm_state.pkl
                            RLlib's Algorithm checkpoint (``algo.save_to_path``): the config,
                            the pipeline's counters (steps, updates, episodes, ...), metrics
        learner_group/      RLlib's learner state: module, target network, optimizer (resume)
        env_runner/         RLlib's local env runner state (runs with --num-env-runners 0)

so ``Algorithm.from_checkpoint("runs/<id>/checkpoints/latest")`` gives a ``PipelinedDQN``
that continues counting with the checkpoint's weights. Its config is the run's, less what
belongs to the ``dsqn train`` process: no ``env_steps_limit`` (the run's --total-steps; the
loaded algorithm trains until its user stops it) and no metrics port. ``dsqn train --resume``
restores ``learner_group/`` and the counters of progress.json (the same as RLlib's). The
replay is not saved: a restored algorithm refills ``learning_starts`` steps before it learns.
Checkpoints written before this layout hold the learner state in ``learner/`` (a LearnerGroup
checkpoint): ``--resume`` still reads them; ``Algorithm.from_checkpoint`` does not.

The old API stack (``--api-stack old``) keeps its own layout: the three project files and
``algorithm/``, RLlib's old-stack whole-algorithm checkpoint (``algo.save_checkpoint``).
``checkpoints/best`` (highest evaluation mean return) holds the three project files only (the
weights, for ``dsqn eval`` and ``dsqn robustness``: no learner state, not resumable).
Everything but resuming reads the project files, without Ray (``dsqn eval`` needs only torch).

A run directory holds ``checkpoints/latest`` and ``checkpoints/best``, ``metrics.jsonl`` (one
line per training iteration) and ``evaluations.jsonl``.

A checkpoint is written into ``<name>.tmp`` and swapped in whole (``write_atomically``): a
failed write (a full disk) removes the staging folder and leaves the previous checkpoint as it
was; a process killed between the two renames of the swap leaves ``<name>.old``, which readers
and the next swap take back. ``CheckpointSchedule`` says when the latest is due: every
``checkpoint_interval`` env steps or every ``checkpoint_every_minutes`` of wall time.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dsqn_rllib.config import ApiStack, TrainConfig
from dsqn_rllib.errors import ConfigError, first_line
from dsqn_rllib.snn.networks import QNetwork, build_q_network

CONFIG_FILE = "train_config.json"
PROGRESS_FILE = "progress.json"
MODEL_FILE = "model.pt"
LEARNER_DIR = "learner_group"  # RLlib's COMPONENT_LEARNER_GROUP, in an Algorithm checkpoint
LEGACY_LEARNER_DIR = "learner"  # a LearnerGroup checkpoint of its own (earlier releases)
ALGORITHM_DIR = "algorithm"  # the old API stack's whole-algorithm checkpoint
# The files of an RLlib (new API stack) Algorithm checkpoint besides its component folders.
RLLIB_METADATA_FILE = "rllib_checkpoint.json"
RLLIB_CTOR_FILE = "class_and_ctor_args.pkl"
RLLIB_STATE_FILE = "algorithm_state.pkl"


class CheckpointError(OSError):
    """A checkpoint could not be written; one line naming it, the reason, and what is kept."""


@dataclass(frozen=True)
class RunPaths:
    """Where one run writes."""

    root: Path

    @property
    def latest(self) -> Path:
        return self.root / "checkpoints" / "latest"

    @property
    def best(self) -> Path:
        return self.root / "checkpoints" / "best"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def evaluations(self) -> Path:
        return self.root / "evaluations.jsonl"


def write_checkpoint_files(
    path: Path, cfg: TrainConfig, progress: dict[str, Any], net: QNetwork
) -> None:
    """Write the Ray-free part of a checkpoint into ``path`` (which must exist)."""
    (path / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2))
    (path / PROGRESS_FILE).write_text(json.dumps(progress, indent=2))
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, path / MODEL_FILE)


def replace_dir(staging: Path, final: Path) -> None:
    """Swap a fully written ``staging`` directory into ``final`` (never a half checkpoint).

    ``final`` is first renamed to ``<final>.old``; if the swap is cut between the two renames
    (an exception here, or a kill, which the next swap repairs) ``<final>.old`` is put back."""
    final.parent.mkdir(parents=True, exist_ok=True)
    old = _old(final)
    if old.exists():
        if final.exists():
            shutil.rmtree(old)
        else:  # an earlier swap was killed between its renames: the old one is the checkpoint
            os.replace(old, final)
    try:
        if final.exists():
            os.replace(final, old)
        os.replace(staging, final)
    except BaseException:
        if old.exists() and not final.exists():
            os.replace(old, final)
        raise
    if old.exists():
        shutil.rmtree(old)


def write_atomically(path: Path, fill: Callable[[Path], None]) -> Path:
    """Write a checkpoint at ``path``: ``fill`` writes into ``<path>.tmp``, which then replaces
    ``path`` whole. Whatever ends ``fill`` early (a full disk, Ctrl-C) removes the staging
    folder and leaves the previous checkpoint intact; an OSError becomes a one-line
    ``CheckpointError``."""
    staging = path.with_name(path.name + ".tmp")
    try:
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        fill(staging)
        replace_dir(staging, path)
    except BaseException as err:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(err, OSError) and not isinstance(err, CheckpointError):
            kept = (
                f"the previous one at {path} is kept" if path.exists() else "no earlier one to keep"
            )
            error = CheckpointError(
                f"cannot write the checkpoint {path}: {first_line(err)}; {kept}"
            )
            error.errno = err.errno
            raise error from err
        raise
    return path


def _old(path: Path) -> Path:
    return path.with_name(path.name + ".old")


class CheckpointSchedule:
    """When the latest checkpoint is due: every ``step_interval`` env steps (at its multiples)
    or ``minutes`` of wall time after the last save, whichever comes first (0 turns either
    off). A save of any cause restarts both clocks.

        schedule = CheckpointSchedule(250_000, 30.0, env_steps=0)
        if schedule.due(env_steps):
            save(); schedule.saved(env_steps)
    """

    def __init__(
        self,
        step_interval: int,
        minutes: float,
        env_steps: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.step_interval = int(step_interval)
        self.seconds = float(minutes) * 60.0
        self.clock = clock
        self.saved(env_steps)

    def saved(self, env_steps: int) -> None:
        """A checkpoint at ``env_steps`` was just written."""
        self.last_save_at = self.clock()
        if self.step_interval > 0:
            self.next_step = (int(env_steps) // self.step_interval + 1) * self.step_interval
        else:
            self.next_step = sys.maxsize

    def due(self, env_steps: int) -> bool:
        if env_steps >= self.next_step:
            return True
        return self.seconds > 0 and self.clock() - self.last_save_at >= self.seconds


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory (its latest checkpoint); one-line errors.
    A checkpoint whose swap was cut short is read from its ``.old`` copy."""
    p = Path(path).expanduser()
    latest = p / "checkpoints" / "latest"
    for candidate in (p, latest, _old(p), _old(latest)):
        if all((candidate / name).is_file() for name in (CONFIG_FILE, PROGRESS_FILE, MODEL_FILE)):
            return candidate
    raise ConfigError(
        f"no dsqn checkpoint at {str(p)!r} (expected {CONFIG_FILE}, {PROGRESS_FILE} and "
        f"{MODEL_FILE} in it or in its checkpoints/latest)"
    )


def _read_json(path: Path) -> Any:
    """A checkpoint's JSON file; a missing, unreadable or cut-short one is one line."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(
            f"checkpoint file {path} is unreadable ({first_line(err)}); the checkpoint is "
            "damaged: use "
            f"another one (an earlier copy of the run directory)"
        ) from None


def read_checkpoint(path: str | Path) -> tuple[Path, TrainConfig, dict[str, Any]]:
    """The checkpoint at ``path`` (or a run directory's latest), its TrainConfig and progress;
    ConfigError (one line, nothing written) when a file is damaged."""
    ckpt = resolve_checkpoint(path)
    data = _read_json(ckpt / CONFIG_FILE)
    if not isinstance(data, dict):
        raise ConfigError(
            f"checkpoint file {ckpt / CONFIG_FILE} holds no TrainConfig (a JSON object)"
        )
    try:
        cfg = TrainConfig.from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"checkpoint file {ckpt / CONFIG_FILE}: {err}") from None
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"checkpoint file {ckpt / CONFIG_FILE} is damaged: {first_line(err)}"
        ) from None
    progress = _read_json(ckpt / PROGRESS_FILE)
    missing = [k for k in _PROGRESS_KEYS if not isinstance(progress, dict) or k not in progress]
    if missing:
        raise ConfigError(
            f"checkpoint file {ckpt / PROGRESS_FILE} is damaged: no {', '.join(missing)}"
        )
    return ckpt, cfg, progress


# What resuming and acting read from progress.json.
_PROGRESS_KEYS = ("env_steps", "obs_shape", "num_actions")


def learner_state_dir(ckpt: Path) -> Path:
    """Where a new-stack checkpoint keeps its learner state: RLlib's ``learner_group/``, or
    ``learner/`` in a checkpoint of an earlier release (``learner_group/`` when neither is)."""
    legacy = ckpt / LEGACY_LEARNER_DIR
    if not (ckpt / LEARNER_DIR).is_dir() and legacy.is_dir():
        return legacy
    return ckpt / LEARNER_DIR


def check_resumable(ckpt: Path, cfg: TrainConfig) -> None:
    """ConfigError (one line) unless ``ckpt`` holds state a run can continue from: the learner
    state (new API stack) or algorithm state (old), complete and unbroken, and RLlib's
    algorithm files where there are. Checked without Ray: every pickle is parsed opcode by
    opcode (``pickletools.genops``: a file cut short or overwritten does not parse; nothing is
    executed or imported) and the torch file's zip records are checked against their CRCs. Run
    before ``ray.init``, so a damaged checkpoint costs no Ray start and writes nothing."""
    new_stack = cfg.api_stack is ApiStack.NEW
    state_dir = learner_state_dir(ckpt) if new_stack else ckpt / ALGORITHM_DIR
    if not state_dir.is_dir() or not any(state_dir.iterdir()):
        what = "learner" if new_stack else "algorithm"
        hint = (
            " (checkpoints/best holds the weights only, for dsqn eval)"
            if ckpt.name == "best"
            else ""
        )
        raise ConfigError(
            f"checkpoint {ckpt} has no {what} state ({state_dir.name}/ is missing or empty)"
            f"{hint}: resume from a run directory or its checkpoints/latest"
        )
    files = [f for f in sorted(state_dir.rglob("*")) if f.is_file()]
    if new_stack:  # RLlib's own files beside it (Algorithm.from_checkpoint reads them)
        files += [ckpt / RLLIB_METADATA_FILE, ckpt / RLLIB_CTOR_FILE, ckpt / RLLIB_STATE_FILE]
        files += sorted(f for f in (ckpt / "env_runner").rglob("*") if f.is_file())
    for file in files:
        if not file.is_file():
            continue
        if file.suffix == ".pkl":
            _check_pickle(file)
        elif file.suffix == ".json":
            _read_json(file)
    _check_torch_file(ckpt / MODEL_FILE)


def _check_pickle(path: Path) -> None:
    import pickletools

    try:
        with path.open("rb") as f:
            for _ in pickletools.genops(f):
                pass
    except Exception as err:  # genops raises ValueError, EOFError, UnicodeDecodeError, ...
        raise ConfigError(
            f"checkpoint file {path} is damaged ({first_line(err)}); the checkpoint cannot be "
            "resumed: "
            "use another one (an earlier copy of the run directory)"
        ) from None


def _check_torch_file(path: Path) -> None:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile) as err:
        bad = first_line(err)
    if bad is not None:
        raise ConfigError(f"checkpoint file {path} is damaged ({bad}); use another checkpoint")


def load_network(path: str | Path) -> tuple[QNetwork, TrainConfig, dict[str, Any]]:
    """The checkpoint's Q-network (CPU, eval mode), its TrainConfig and progress."""
    ckpt, cfg, progress = read_checkpoint(path)
    net = build_q_network(
        cfg.model, tuple(progress["obs_shape"]), int(progress["num_actions"]), **cfg.model_options()
    )
    _check_torch_file(ckpt / MODEL_FILE)
    try:
        # weights_only: a checkpoint is data; unpickling arbitrary objects would run code.
        state = torch.load(ckpt / MODEL_FILE, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except (RuntimeError, pickle.UnpicklingError) as err:
        raise ConfigError(
            f"checkpoint file {ckpt / MODEL_FILE} does not hold this network's weights: "
            f"{first_line(err)}"
        ) from None
    net.eval()
    return net, cfg, progress


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file; a line cut short by a kill is skipped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def write_jsonl_atomically(path: Path, records: list[dict[str, Any]]) -> None:
    staging = path.with_name(path.name + ".tmp")
    with staging.open("w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
        f.flush()
        os.fsync(f.fileno())
    os.replace(staging, path)  # readers see the old file or the new one, never half of it
