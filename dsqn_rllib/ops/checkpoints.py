"""Checkpoint layout, readable without Ray (``dsqn eval`` needs only torch):

    <checkpoint>/
        train_config.json   the TrainConfig of the run
        progress.json       env steps, updates, episodes, evaluation history, run id
        model.pt            the online Q-network's state_dict (what acting needs)
        learner/            RLlib learner state: module, target network, optimizer (resume)
        algorithm/          (old API stack) RLlib's whole-algorithm checkpoint

A run directory holds ``checkpoints/latest`` and ``checkpoints/best`` (highest evaluation
mean return), ``metrics.jsonl`` (one line per training iteration) and ``evaluations.jsonl``.

A checkpoint is written into ``<name>.tmp`` and swapped in whole (``write_atomically``): a
failed write (a full disk) removes the staging folder and leaves the previous checkpoint as it
was; a process killed between the two renames of the swap leaves ``<name>.old``, which readers
and the next swap take back. ``CheckpointSchedule`` says when the latest is due: every
``checkpoint_interval`` env steps or every ``checkpoint_every_minutes`` of wall time.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dsqn_rllib.config import TrainConfig
from dsqn_rllib.errors import ConfigError
from dsqn_rllib.snn.networks import QNetwork, build_q_network

CONFIG_FILE = "train_config.json"
PROGRESS_FILE = "progress.json"
MODEL_FILE = "model.pt"
LEARNER_DIR = "learner"
ALGORITHM_DIR = "algorithm"


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
            reason = err.strerror or (str(err).splitlines() or [type(err).__name__])[0]
            error = CheckpointError(f"cannot write the checkpoint {path}: {reason}; {kept}")
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


def read_checkpoint(path: str | Path) -> tuple[Path, TrainConfig, dict[str, Any]]:
    ckpt = resolve_checkpoint(path)
    cfg = TrainConfig.from_dict(json.loads((ckpt / CONFIG_FILE).read_text()))
    progress = json.loads((ckpt / PROGRESS_FILE).read_text())
    return ckpt, cfg, progress


def load_network(path: str | Path) -> tuple[QNetwork, TrainConfig, dict[str, Any]]:
    """The checkpoint's Q-network (CPU, eval mode), its TrainConfig and progress."""
    ckpt, cfg, progress = read_checkpoint(path)
    net = build_q_network(
        cfg.model, tuple(progress["obs_shape"]), int(progress["num_actions"]), **cfg.model_options()
    )
    net.load_state_dict(torch.load(ckpt / MODEL_FILE, map_location="cpu", weights_only=True))
    net.eval()
    return net, cfg, progress
