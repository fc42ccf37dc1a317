"""Runs → tables: the arithmetic of compare() exactly, the formats, and the registry path."""

from __future__ import annotations

import csv
import io
import math

import pytest

from dsqn_rllib.evaluation.compare import (
    HUMAN_REFERENCE,
    RunScore,
    compare,
    human_normalized,
    render,
    run_score,
    scores_from_registry,
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
