"""Runs → tables: the arithmetic of compare() exactly, the formats, and the registry path."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest

from dsqn_rllib.evaluation.compare import (
    HUMAN_REFERENCE,
    RunCurve,
    RunScore,
    compare,
    curve_bands,
    curves_from_registry,
    draw_learning_curves,
    human_normalized,
    render,
    run_score,
    scores_from_registry,
    write_learning_curves,
)
from dsqn_rllib.ops.registry import RegistryConfig, RunRecord, open_registry
from dsqn_rllib.snn.readouts import Readout

PAPER_17 = {
    "atlantis", "beam_rider", "boxing", "breakout", "crazy_climber", "gopher", "jamesbond",
    "kangaroo", "krull", "name_this_game", "pong", "road_runner", "space_invaders",
    "star_gunner", "tennis", "tutankham", "video_pinball",
}  # fmt: skip


def test_human_normalized_scores_cover_the_paper_games() -> None:
    assert set(HUMAN_REFERENCE) == PAPER_17
    assert human_normalized("pong", -20.7) == 0.0 and human_normalized("pong", 14.6) == 1.0
    assert human_normalized("breakout", 16.1) == pytest.approx(0.5)
    assert math.isnan(human_normalized("CartPole-v1", 500.0))


def test_rows_group_seeds_and_compare_dsqn_with_dqn() -> None:
    scores = [
        RunScore("a", "pong", "dsqn", "max-mem", 8, 10.0),
        RunScore("b", "pong", "dsqn", "max-mem", 8, 14.0),
        RunScore("c", "pong", "dqn", "-", None, 5.0),
        RunScore("d", "pong", "dqn", "-", None, 9.0),
        RunScore("e", "pong", "dsqn", "mean-mem", 8, 3.0),
    ]
    dqn, dsqn_max, dsqn_mean = compare(scores)
    assert (dqn.model, dqn.n, dqn.mean, dqn.std, dqn.vs_dqn) == ("dqn", 2, 7.0, 2.0, None)
    assert (dsqn_max.readout, dsqn_max.n, dsqn_max.mean, dsqn_max.std) == ("max-mem", 2, 12.0, 2.0)
    assert dsqn_max.vs_dqn == 5.0 and dsqn_max.vs_dqn_se == pytest.approx(math.sqrt(4 / 2 + 4 / 2))
    assert dsqn_max.human_normalized == pytest.approx((12.0 + 20.7) / 35.3)
    assert (dsqn_mean.n, dsqn_mean.std, dsqn_mean.vs_dqn) == (1, 0.0, -4.0)


def test_every_format_carries_the_same_numbers() -> None:
    rows = compare([RunScore("a", "space_invaders", "dsqn", "max-mem", 8, 512.25)])
    parsed = list(csv.DictReader(io.StringIO(render(rows, "csv"))))
    assert parsed[0]["game"] == "space_invaders" and float(parsed[0]["mean"]) == 512.25
    assert "| space_invaders | dsqn | max-mem | 8 | 1 | 512.25 |" in render(rows, "markdown")
    latex = render(rows, "latex")
    assert r"space\_invaders & dsqn & max-mem & 8 & 1 & 512.25" in latex
    assert latex.startswith(r"\begin{tabular}") and latex.rstrip().endswith(r"\end{tabular}")
    assert "512.25" in render(rows, "table").splitlines()[1]
    with pytest.raises(ValueError):
        render(rows, "html")


def test_scores_come_from_the_registrys_own_records(tmp_path: object) -> None:
    """Both record kinds (dsqn train's TrainConfig, RunObserver's network), the best
    non-superseded evaluation of each, one sweep only."""
    registry = open_registry(RegistryConfig.resolve(None, "dsqn", run_root=tmp_path))
    registry.start_run(
        RunRecord(run_id="cli", env="pong", model="dsqn",
                  config={"model": "dsqn", "spiking": {"T": 4, "readout": Readout.LAST_MEM.value},
                          "sweep": "s"})
    )  # fmt: skip
    registry.start_run(
        RunRecord(run_id="tune", env="pong", model="dqn",
                  config={"network": {"model": "dqn", "T": 8, "readout": "max-mem"}, "sweep": "s"})
    )  # fmt: skip
    registry.start_run(RunRecord(run_id="other", env="pong", model="dqn", config={"sweep": "x"}))
    for run_id, steps, mean, superseded in [
        ("cli", 100, 1.5, False), ("cli", 200, 4.0, False), ("cli", 300, 9.0, True),
        ("tune", 100, -3.0, False), ("other", 100, 50.0, False),
    ]:  # fmt: skip
        evaluation = {"env_steps": steps, "attempt": 0, "mean": mean}
        if superseded:
            evaluation["superseded"] = True
        registry.record_evaluation(run_id, evaluation)
    scores = sorted(scores_from_registry(registry, sweep="s"), key=lambda s: s.run_id)
    assert scores == [
        RunScore("cli", "pong", "dsqn", "last-mem", 4, 4.0),  # 9.0 was superseded
        RunScore("tune", "pong", "dqn", "-", None, -3.0),
    ]
    assert run_score(registry.get_run("cli"), []) is None


def _curve(
    run_id: str, model: str, points: list[tuple[int, float]], game: str = "pong"
) -> RunCurve:
    readout, T = ("max-mem", 8) if model == "dsqn" else ("-", None)
    steps, means = zip(*points, strict=True)
    return RunCurve(run_id, game, model, readout, T, tuple(steps), tuple(means))


def test_bands_over_seeds_are_the_records_where_seeds_share_steps() -> None:
    seeds = [
        _curve("a", "dsqn", [(100, 1.0), (200, 3.0), (300, 5.0)]),
        _curve("b", "dsqn", [(100, 3.0), (200, 7.0), (300, 9.0)]),
        _curve("c", "dqn", [(100, -2.0), (300, 4.0)]),
    ]
    dqn, dsqn = curve_bands(seeds)
    assert (dsqn.n, dsqn.steps, dsqn.mean) == (2, (100, 200, 300), (2.0, 5.0, 7.0))
    assert dsqn.std == (1.0, 2.0, 2.0)
    assert (dsqn.low, dsqn.high) == ((1.0, 3.0, 5.0), (3.0, 7.0, 9.0))
    assert (dqn.n, dqn.steps, dqn.mean, dqn.std) == (1, (100, 300), (-2.0, 4.0), (0.0, 0.0))
    assert dsqn.label == "dsqn max-mem T=8 (n=2)" and dqn.label == "dqn (n=1)"


def test_seeds_evaluated_at_different_steps_meet_on_the_range_they_share() -> None:
    """Seed a at 100, 300, 500; seed b at 200, 400: the grid is 200, 300, 400 (both cover
    200..400); a at 200 and 400, b at 300 are interpolated between their own records."""
    a = _curve("a", "dsqn", [(100, 0.0), (300, 10.0), (500, 20.0)])
    b = _curve("b", "dsqn", [(200, 4.0), (400, 8.0)])
    (band,) = curve_bands([a, b])
    assert band.steps == (200, 300, 400)
    assert band.low == (4.0, 6.0, 8.0) and band.high == (5.0, 10.0, 15.0)
    assert band.mean == (4.5, 8.0, 11.5)


def test_the_figure_draws_the_records_one_subplot_per_game(tmp_path: Path) -> None:
    curves = [
        _curve("a", "dsqn", [(100, 1.0), (200, 3.0)]),
        _curve("b", "dsqn", [(100, 3.0), (200, 7.0)]),
        _curve("c", "dqn", [(100, 0.5), (200, 1.5)]),
        _curve("d", "dqn", [(100, 400.0), (200, 800.0)], game="breakout"),
    ]
    fig = draw_learning_curves(curves, band="minmax")
    breakout, pong = (ax for ax in fig.axes if ax.get_visible())
    assert (breakout.get_title(), pong.get_title()) == ("breakout", "pong")
    lines = {tuple(line.get_ydata()) for line in pong.lines}
    assert {(1.0, 3.0), (3.0, 7.0), (0.5, 1.5), (2.0, 5.0)} <= lines  # seeds and the dsqn mean
    (dsqn_band,) = [c for c in pong.collections if c.get_paths()[0].vertices[:, 1].max() == 7.0]
    assert dsqn_band.get_paths()[0].vertices[:, 1].min() == 1.0  # min-max: lowest seed
    png = write_learning_curves(curves, tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no evaluated runs"):
        draw_learning_curves([])


def test_curves_come_from_the_registrys_records(tmp_path: Path) -> None:
    """Sorted by step, superseded left out, the last record of a repeated step kept."""
    registry = open_registry(RegistryConfig.resolve(None, "dsqn", run_root=tmp_path))
    registry.start_run(RunRecord(run_id="r", env="pong", model="dqn", config={"sweep": "s"}))
    for steps, mean, superseded in [(300, 3.0, False), (100, 1.0, False), (200, 9.0, True),
                                    (300, 4.0, False)]:  # fmt: skip
        registry.record_evaluation(
            "r", {"env_steps": steps, "attempt": 0, "mean": mean, "superseded": superseded}
        )
    (curve,) = curves_from_registry(registry, sweep="s")
    assert (curve.steps, curve.means) == ((100, 300), (1.0, 4.0))
    assert curves_from_registry(registry, sweep="other") == []


def test_compare_reads_run_directories_without_a_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``dsqn compare RUN_DIR ...``: each run's config from its checkpoint, its best from its
    own evaluations.jsonl (superseded records skipped); a folder that is no run is one line."""
    import json

    from dsqn_rllib.cli import main
    from dsqn_rllib.config import TrainConfig

    runs = {
        "dsqn-0": ("dsqn", [10.0, 30.0, 99.0], [False, False, True]),
        "dsqn-1": ("dsqn", [20.0, 10.0], [False, False]),
        "dqn-0": ("dqn", [5.0, 15.0], [False, False]),
    }
    for name, (model, means, superseded) in runs.items():
        latest = tmp_path / name / "checkpoints" / "latest"
        latest.mkdir(parents=True)
        config = TrainConfig(game="pong", model=model).validate()
        (latest / "train_config.json").write_text(json.dumps(config.to_dict()))
        progress = {"env_steps": 3000, "obs_shape": [4, 84, 84], "num_actions": 6}
        (latest / "progress.json").write_text(json.dumps(progress))
        (latest / "model.pt").write_bytes(b"")  # (the table reads no weights)
        lines = [
            json.dumps({"env_steps": 1000 * (i + 1), "mean": m, "superseded": s})
            for i, (m, s) in enumerate(zip(means, superseded, strict=True))
        ]
        (tmp_path / name / "evaluations.jsonl").write_text("\n".join(lines) + "\n")
    png = tmp_path / "curves.png"
    args = ["compare", *(str(tmp_path / n) for n in runs), "--format", "csv", "--curves", str(png)]
    assert main(args) == 0
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert int(rows["dsqn"]["n"]) == 2 and float(rows["dsqn"]["mean"]) == pytest.approx(25.0)
    assert int(rows["dqn"]["n"]) == 1 and float(rows["dqn"]["mean"]) == pytest.approx(15.0)
    assert float(rows["dsqn"]["vs DQN"]) == pytest.approx(10.0)
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["compare", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a dsqn train run directory" in err
