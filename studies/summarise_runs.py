"""Side-by-side summary of training runs: evaluation returns and firing rates over steps.

    python studies/summarise_runs.py runs/learn-road_runner/dqn runs/learn-road_runner/dsqn

Prints one table of evaluations (mean ± std per run at each evaluated step), the firing rate
of each LIF layer at a few points of each spiking run, and writes ``learning.png`` (returns,
and rates per layer) next to the first run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(run_dirs: list[Path]) -> None:
    evals = {d.name: read_jsonl(d / "evaluations.jsonl") for d in run_dirs}
    reports = {d.name: read_jsonl(d / "metrics.jsonl") for d in run_dirs}
    print("evaluation (ε 0.05, whole games, unclipped): mean ± std over episodes")
    steps = sorted({e["env_steps"] for es in evals.values() for e in es})
    print("steps".rjust(8), *(name.rjust(18) for name in evals))
    for step in steps:
        cells = []
        for es in evals.values():
            e = next((e for e in es if e["env_steps"] == step), None)
            cells.append("-" if e is None else f"{e['mean']:.1f} ± {e['std']:.1f}")
        print(f"{step:8,}", *(c.rjust(18) for c in cells))
    for name, rs in reports.items():
        spiking = [r for r in rs if r.get("firing_rates")]
        if not spiking:
            continue
        print(f"\n{name}: firing rate per LIF layer (actor inference), updates, Q mean")
        for r in spiking[:: max(1, len(spiking) // 8)] + spiking[-1:]:
            rates = " ".join(f"{k} {v:.3f}" for k, v in r["firing_rates"].items())
            print(f"  step {r['env_steps']:7,}  updates {r['updates']:6,}  {rates}")

    fig, (ax_return, ax_rates) = plt.subplots(1, 2, figsize=(12, 4))
    for name, es in evals.items():
        if es:
            ax_return.errorbar(
                [e["env_steps"] for e in es],
                [e["mean"] for e in es],
                yerr=[e["std"] for e in es],
                label=name,
                capsize=3,
            )
    ax_return.set(xlabel="agent steps", ylabel="evaluation return", title="Return")
    ax_return.legend()
    for name, rs in reports.items():
        spiking = [r for r in rs if r.get("firing_rates")]
        for layer in spiking[-1]["firing_rates"] if spiking else ():
            ax_rates.plot(
                [r["env_steps"] for r in spiking],
                [r["firing_rates"][layer] for r in spiking],
                label=f"{name} {layer}",
            )
    ax_rates.set(xlabel="agent steps", ylabel="spikes / neuron / step", title="Firing rates")
    ax_rates.legend()
    out = run_dirs[0].parent / "learning.png"
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]])
