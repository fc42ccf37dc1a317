"""Plot ``wake_up.py``'s records: each LIF layer's firing rate over updates, nets side by side.

    python studies/plot_wake_up.py studies/results/wake_up_ours_pong.jsonl \
        studies/results/wake_up_spikingjelly_pong.jsonl --out studies/results/wake_up_pong.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

LAYERS = ("conv1", "conv2", "conv3", "fc")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("records", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    fig, axes = plt.subplots(1, len(LAYERS) + 1, figsize=(18, 3.6))
    for path, style in zip(args.records, ("-", "--", ":", "-."), strict=False):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        label = rows[0]["net"] + (" threshold-aware" if "gains" in rows[0] else "")
        rows = [r for r in rows if "update" in r]
        updates = [r["update"] for r in rows]
        for ax, layer in zip(axes, LAYERS, strict=False):
            ax.plot(updates, [r["probe_rates"][layer] for r in rows], style, label=label)
            ax.set_title(f"{layer} firing rate")
        axes[-1].plot(updates, [r["probe_q_std"] for r in rows], style, label=label)
        axes[-1].set_title("Q spread over the probe frames")
    for ax in axes:
        ax.set_xlabel("updates (batch 128)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("A fresh DSQN on Pong under the authors' settings (same initial weights)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
