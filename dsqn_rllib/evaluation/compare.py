"""Runs → the paper's tables: one row per (game, model, readout, T), over seeds.

Each run contributes its *best* evaluation mean (the paper reports the best policy's score);
a row has the number of runs (seeds), the mean and standard deviation of those scores, the
human-normalized mean, and for a DSQN row the difference to the DQN rows of the same game with
its standard error. The numbers come only from the runs' own evaluation records (the run
registry); nothing is recomputed.

Learning curves (``dsqn compare --curves PNG``): each run's evaluation means against env steps,
one subplot per game, per (model, readout, T) the mean over seeds with a band (± std or
min-max) and each seed's own records; see ``CurveBand`` for how seeds evaluated at different
steps are put on one grid.

Human-normalized score: ``(score - random) / (human - random)``, with the random and human
reference scores of the Atari-57 tables (up to 30 no-op starts, 108k-frame episodes) as
tabulated in DeepMind's DQN Zoo (``atari_data.py``, from Badia et al. 2020, Agent57).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

# (random, human) reference scores of the paper's 17 games (DQN Zoo's atari_data.py).
HUMAN_REFERENCE: dict[str, tuple[float, float]] = {
    "atlantis": (12850.0, 29028.1),
    "beam_rider": (363.9, 16926.5),
    "boxing": (0.1, 12.1),
    "breakout": (1.7, 30.5),
    "crazy_climber": (10780.5, 35829.4),
    "gopher": (257.6, 2412.5),
    "jamesbond": (29.0, 302.8),
    "kangaroo": (52.0, 3035.0),
    "krull": (1598.0, 2665.5),
    "name_this_game": (2292.3, 8049.0),
    "pong": (-20.7, 14.6),
    "road_runner": (11.5, 7845.0),
    "space_invaders": (148.0, 1668.7),
    "star_gunner": (664.0, 10250.0),
    "tennis": (-23.8, -8.3),
    "tutankham": (11.4, 167.6),
    "video_pinball": (16256.9, 17667.9),
}


class TableFormat(str, Enum):
    TABLE = "table"
    CSV = "csv"
    MARKDOWN = "markdown"
    LATEX = "latex"


def human_normalized(game: str, score: float) -> float:
    """``(score - random) / (human - random)``; NaN for a game without reference scores."""
    random, human = HUMAN_REFERENCE.get(game, (math.nan, math.nan))
    return (score - random) / (human - random)


@dataclass(frozen=True)
class RunScore:
    """One run's identity in a table and its best evaluation mean."""

    run_id: str
    game: str
    model: str
    readout: str
    T: int | None
    best: float


@dataclass(frozen=True)
class CompareRow:
    game: str
    model: str
    readout: str
    T: int | None
    n: int
    mean: float
    std: float
    """Population standard deviation over the runs (0 for one run)."""
    human_normalized: float
    vs_dqn: float | None = None
    """DSQN rows: mean minus the DQN mean of the same game (None without a DQN row)."""
    vs_dqn_se: float | None = None
    """Standard error of that difference: sqrt(std²/n + std_dqn²/n_dqn)."""


def run_key(record: Any) -> tuple[str, str, str, int | None]:
    """(game, model, readout, T) of a registry record. Reads both record kinds:
    ``dsqn train``'s (a TrainConfig) and ``RunObserver``'s (a DSQNConfig)."""
    config = record.config or {}
    network = config.get("network")
    if network is not None:  # RunObserver
        model, readout, T = network["model"], network["readout"], network["T"]
    else:  # dsqn train's TrainConfig
        spiking = config.get("spiking", {})
        model, readout, T = (
            config.get("model", record.model),
            spiking.get("readout"),
            spiking.get("T"),
        )
    if model != "dsqn":
        readout, T = "-", None  # the DQN twin has neither
    return record.env, model, str(readout), T


def run_score(record: Any, evaluations: Sequence[Mapping[str, Any]]) -> RunScore | None:
    """The run's key and best evaluation mean; None for a run without evaluations."""
    means = [float(e["mean"]) for e in evaluations if not e.get("superseded")]
    if not means:
        return None
    return RunScore(record.run_id, *run_key(record), max(means))


def compare(scores: Iterable[RunScore]) -> list[CompareRow]:
    """Rows grouped by (game, model, readout, T), sorted by game then model (dqn first)."""
    groups: dict[tuple[str, str, str, int | None], list[float]] = {}
    for s in scores:
        groups.setdefault((s.game, s.model, s.readout, s.T), []).append(s.best)
    stats = {key: _mean_std(values) for key, values in groups.items()}
    rows = []
    for (game, model, readout, T), values in sorted(groups.items(), key=_order):
        mean, std = stats[(game, model, readout, T)]
        diff = se = None
        twins = [(k, v) for k, v in groups.items() if k[0] == game and k[1] == "dqn"]
        if model == "dsqn" and len(twins) == 1:
            ((twin_key, twin_values),) = twins
            twin_mean, twin_std = stats[twin_key]
            diff = mean - twin_mean
            se = math.sqrt(std**2 / len(values) + twin_std**2 / len(twin_values))
        rows.append(
            CompareRow(
                game,
                model,
                readout,
                T,
                len(values),
                mean,
                std,
                human_normalized(game, mean),
                diff,
                se,
            )
        )
    return rows


def _order(item: tuple[tuple[str, str, str, int | None], list[float]]) -> tuple:
    (game, model, readout, T), _ = item
    return (game, model != "dqn", readout, T or 0)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


HEADER = ("game", "model", "readout", "T", "n", "mean", "std", "human-norm", "vs DQN", "± se")


def _cells(row: CompareRow) -> list[str]:
    def num(value: float | None, digits: int = 2) -> str:
        return "" if value is None or math.isnan(value) else f"{value:.{digits}f}"

    return [
        row.game, row.model, row.readout, "" if row.T is None else str(row.T), str(row.n),
        num(row.mean), num(row.std), num(row.human_normalized, 3), num(row.vs_dqn),
        num(row.vs_dqn_se),
    ]  # fmt: skip


def render(rows: Sequence[CompareRow], fmt: TableFormat | str = TableFormat.TABLE) -> str:
    """The rows as a console table, CSV, Markdown or a LaTeX tabular."""
    fmt = TableFormat(fmt)
    body = [_cells(r) for r in rows]
    if fmt is TableFormat.CSV:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(body)
        return out.getvalue()
    if fmt is TableFormat.MARKDOWN:
        lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in body]) + "\n"
    if fmt is TableFormat.LATEX:
        escape = str.maketrans({"_": r"\_", "±": r"$\pm$"})
        lines = [
            r"\begin{tabular}{lllrrrrrrr}",
            r"\toprule",
            " & ".join(HEADER).translate(escape) + r" \\",
            r"\midrule",
            *(" & ".join(c).translate(escape) + r" \\" for c in body),
            r"\bottomrule",
            r"\end{tabular}",
        ]
        return "\n".join(lines) + "\n"
    widths = [max(len(h), *(len(c[i]) for c in body)) for i, h in enumerate(HEADER)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) for cells in body]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def scores_from_registry(registry: Any, sweep: str | None = None) -> list[RunScore]:
    """Every run of the registry (of one sweep, when named) that has evaluations."""
    scores = []
    for record in registry.list_runs():
        if sweep is not None and (record.config or {}).get("sweep") != sweep:
            continue
        score = run_score(record, registry.evaluations(record.run_id))
        if score is not None:
            scores.append(score)
    return scores


def records_from_run_dirs(paths: Iterable[str | Path]) -> list[tuple[Any, list[dict]]]:
    """(record, evaluations) of ``dsqn train`` run directories, read from their files (no
    registry): the run's config from its checkpoint, its evaluations.jsonl."""
    from types import SimpleNamespace

    from dsqn_rllib.errors import ConfigError
    from dsqn_rllib.evaluation.report import read_jsonl
    from dsqn_rllib.ops.checkpoints import read_checkpoint

    found = []
    for path in map(Path, paths):
        try:
            _, cfg, _ = read_checkpoint(path)
        except ConfigError as err:
            raise ConfigError(f"{path} is not a dsqn train run directory ({err})") from None
        record = SimpleNamespace(
            run_id=path.name, env=cfg.game or cfg.env or "", model=cfg.model.value,
            config=cfg.to_dict(),
        )  # fmt: skip
        found.append((record, read_jsonl(path / "evaluations.jsonl")))
    return found


# --- learning curves ----------------------------------------------------------------------------


class Band(str, Enum):
    """What the shaded band over seeds shows."""

    STD = "std"
    """mean ± population standard deviation"""
    MINMAX = "minmax"
    """the lowest to the highest seed"""


@dataclass(frozen=True)
class RunCurve:
    """One run's evaluation means against env steps, as recorded (superseded ones left out)."""

    run_id: str
    game: str
    model: str
    readout: str
    T: int | None
    steps: tuple[int, ...]
    means: tuple[float, ...]

    @property
    def key(self) -> tuple[str, str, str, int | None]:
        return self.game, self.model, self.readout, self.T


@dataclass(frozen=True)
class CurveBand:
    """The seeds of one (game, model, readout, T) on one step grid: their mean and spread.

    The grid is every step at which some seed was evaluated, within the range every seed
    covers (seeds are evaluated at different env steps: an iteration ends on time, not on a
    step count). A seed's value at a step where it has no record is linearly interpolated
    between its two neighbouring records; where all seeds share the steps, every number is
    a record's. One seed: its records exactly, no spread.
    """

    game: str
    model: str
    readout: str
    T: int | None
    n: int
    steps: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]

    @property
    def label(self) -> str:
        if self.model != "dsqn":
            return f"{self.model} (n={self.n})"
        return f"{self.model} {self.readout} T={self.T} (n={self.n})"


def run_curve(record: Any, evaluations: Sequence[Mapping[str, Any]]) -> RunCurve | None:
    """The run's evaluations sorted by env steps (the later record of a step repeated);
    None without evaluations."""
    by_step: dict[int, float] = {}
    for e in evaluations:
        if not e.get("superseded"):
            by_step[int(e["env_steps"])] = float(e["mean"])
    if not by_step:
        return None
    steps = tuple(sorted(by_step))
    return RunCurve(record.run_id, *run_key(record), steps, tuple(by_step[s] for s in steps))


def curves_from_registry(registry: Any, sweep: str | None = None) -> list[RunCurve]:
    """Every run of the registry (of one sweep, when named) that has evaluations."""
    curves = []
    for record in registry.list_runs():
        if sweep is not None and (record.config or {}).get("sweep") != sweep:
            continue
        curve = run_curve(record, registry.evaluations(record.run_id))
        if curve is not None:
            curves.append(curve)
    return curves


def _interp(x: float, xs: Sequence[int], ys: Sequence[float]) -> float:
    """Linear interpolation of (xs, ys) at ``x`` (xs sorted, x within them); a record's own
    value where ``x`` is one of xs."""
    for i, xi in enumerate(xs):
        if xi == x:
            return ys[i]
        if xi > x:
            x0, y0 = xs[i - 1], ys[i - 1]
            return y0 + (ys[i] - y0) * (x - x0) / (xi - x0)
    raise ValueError(f"step {x} outside {xs[0]}..{xs[-1]}")


def curve_bands(curves: Iterable[RunCurve]) -> list[CurveBand]:
    """One band per (game, model, readout, T), in the table's order (see ``CurveBand``)."""
    groups: dict[tuple[str, str, str, int | None], list[RunCurve]] = {}
    for c in curves:
        groups.setdefault(c.key, []).append(c)
    bands = []
    for key, runs in sorted(groups.items(), key=_order):
        first = max(r.steps[0] for r in runs)
        last = min(r.steps[-1] for r in runs)
        grid = sorted({s for r in runs for s in r.steps if first <= s <= last})
        columns = [[_interp(s, r.steps, r.means) for r in runs] for s in grid]
        stats = [_mean_std(values) for values in columns]
        bands.append(
            CurveBand(
                *key,
                n=len(runs),
                steps=tuple(grid),
                mean=tuple(m for m, _ in stats),
                std=tuple(sd for _, sd in stats),
                low=tuple(min(v) for v in columns),
                high=tuple(max(v) for v in columns),
            )
        )
    return bands


def draw_learning_curves(
    curves: Sequence[RunCurve], band: Band | str = Band.STD, title: str | None = None
) -> Any:
    """A matplotlib Figure: one subplot per game; per (model, readout, T) the mean over seeds
    (a line), its band, and each seed's own records (thin, same colour)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    band = Band(band)
    bands = curve_bands(curves)
    games = sorted({b.game for b in bands})
    if not games:
        raise ValueError("no evaluated runs to draw")
    cols = min(3, len(games))
    rows = math.ceil(len(games) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4 * rows), squeeze=False)
    for ax, game in zip(axes.flat, games, strict=False):
        for i, b in enumerate(x for x in bands if x.game == game):
            color = f"C{i % 10}"
            for c in (c for c in curves if c.key == (b.game, b.model, b.readout, b.T)):
                ax.plot(c.steps, c.means, color=color, alpha=0.35, linewidth=0.8, marker=".")
            ax.plot(b.steps, b.mean, color=color, linewidth=2, label=b.label)
            if band is Band.STD:
                lo = [m - s for m, s in zip(b.mean, b.std, strict=True)]
                hi = [m + s for m, s in zip(b.mean, b.std, strict=True)]
            else:
                lo, hi = list(b.low), list(b.high)
            ax.fill_between(b.steps, lo, hi, color=color, alpha=0.2, linewidth=0)
        ax.set(xlabel="env steps", ylabel="evaluation return", title=game)
        ax.legend(fontsize="small")
    for ax in axes.flat[len(games) :]:
        ax.set_visible(False)
    spread = "± std" if band is Band.STD else "min-max"
    fig.suptitle(f"{title + ': ' if title else ''}mean over seeds, band {spread}; thin: seeds")
    fig.tight_layout()
    return fig


def write_learning_curves(
    curves: Sequence[RunCurve],
    path: str | Path,
    band: Band | str = Band.STD,
    title: str | None = None,
) -> Path:
    """``draw_learning_curves`` saved as a PNG at ``path``; returns the path."""
    import matplotlib.pyplot as plt

    fig = draw_learning_curves(curves, band, title)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
