"""Checkpoint layout, readable without Ray (``dsqn eval`` needs only torch):

    <checkpoint>/
        train_config.json   the TrainConfig of the run
        progress.json       env steps, updates, episodes, evaluation history, run id
        model.pt            the online Q-network's state_dict (what acting needs)
        learner/            RLlib learner state: module, target network, optimizer (resume)
        algorithm/          (old API stack) RLlib's whole-algorithm checkpoint

A run directory holds ``checkpoints/latest`` and ``checkpoints/best`` (highest evaluation
mean return), ``metrics.jsonl`` (one line per training iteration) and ``evaluations.jsonl``.
"""

from __future__ import annotations

import json
import os
import shutil
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
    """Swap a fully written ``staging`` directory into ``final`` (never a half checkpoint)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    if old.exists():
        shutil.rmtree(old)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory (its latest checkpoint); one-line errors."""
    p = Path(path).expanduser()
    for candidate in (p, p / "checkpoints" / "latest"):
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
    net.load_state_dict(torch.load(ckpt / MODEL_FILE, map_location="cpu"))
    net.eval()
    return net, cfg, progress
