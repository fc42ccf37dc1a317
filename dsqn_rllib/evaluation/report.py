"""``dsqn report RUN``: PNG plots of a run from what it recorded, for users without Grafana.

Reads ``metrics.jsonl`` (one line per training iteration) and ``evaluations.jsonl`` of a run
directory and writes ``returns.png`` (training and evaluation return), ``firing_rates.png``
(per LIF layer) and ``throughput.png`` (env steps/s and learner updates/s).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt

from dsqn_rllib.errors import ConfigError


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _finite(values: list[Any]) -> list[float]:
    return [float(v) if v is not None and math.isfinite(float(v)) else math.nan for v in values]


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write the run's PNG plots into ``out_dir`` (default: the run directory); return them."""
    run = Path(run_dir).expanduser()
    metrics = read_jsonl(run / "metrics.jsonl")
    if not metrics:
        raise ConfigError(
            f"no metrics.jsonl with data in {str(run)!r}: is it a dsqn run directory?"
        )
    evaluations = read_jsonl(run / "evaluations.jsonl")
    out = Path(out_dir) if out_dir is not None else run
    out.mkdir(parents=True, exist_ok=True)
    steps = [m["env_steps"] for m in metrics]
    title = str(metrics[-1].get("run_id", run.name))
    written = []

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(
        steps,
        _finite([m.get("episode_return_mean") for m in metrics]),
        label="training (last 100 episodes)",
    )
    if evaluations:
        ev_steps = [e["env_steps"] for e in evaluations]
        means = [e["mean"] for e in evaluations]
        stds = [e.get("std", 0.0) for e in evaluations]
        ax.errorbar(
            ev_steps, means, yerr=stds, marker="o", capsize=3, label="evaluation (mean ± std)"
        )
    ax.set(xlabel="env steps", ylabel="episode return", title=f"{title}: return")
    ax.legend()
    written.append(_save(fig, out / "returns.png"))

    layers = sorted({k for m in metrics for k in m.get("firing_rates", {})})
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for layer in layers:
        ax.plot(
            steps, _finite([m.get("firing_rates", {}).get(layer) for m in metrics]), label=layer
        )
    ax.set(xlabel="env steps", ylabel="spikes per neuron per step", title=f"{title}: firing rates")
    if layers:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no spiking layers (DQN twin)", ha="center", transform=ax.transAxes)
    written.append(_save(fig, out / "firing_rates.png"))

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(steps, _finite([m.get("env_steps_per_s") for m in metrics]), label="env steps/s")
    ax.set(xlabel="env steps", ylabel="env steps/s", title=f"{title}: throughput")
    twin = ax.twinx()
    twin.plot(
        steps,
        _finite([m.get("updates_per_s") for m in metrics]),
        color="tab:red",
        label="updates/s",
    )
    twin.set_ylabel("learner updates/s")
    fig.legend(loc="upper right")
    written.append(_save(fig, out / "throughput.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
