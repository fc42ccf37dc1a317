"""Write the Grafana dashboards of this folder from code (Grafana Foundation SDK, Grafana 11.6).

    python dashboards/generate.py           # rewrite dashboards/*.json
    python dashboards/generate.py --check   # exit 1 if a committed JSON differs (CI runs this)

The committed JSON is this script's output: edit the panels here, never the JSON by hand
(``tests/test_dashboards.py`` fails on a JSON that the script would not write). Every panel
queries the Prometheus datasource ``dsqn-prometheus`` (``provisioning/datasources``) for the
``dsqn_*`` series of ``dsqn_rllib/ops/metrics.py``, filtered by the ``$run_id`` and ``$game``
template variables.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import heatmap, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import heatmap as heatmap_model
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

HERE = Path(__file__).resolve().parent
PROVISIONED_DATASOURCE_UID = "dsqn-prometheus"
# Every query names the dashboard's datasource variable (default: the provisioned datasource),
# so a Grafana with its own Prometheus datasource picks it from a list instead of editing JSON.
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# Every panel's series selector: the chosen runs of the chosen game (=~: run_id is multi-value).
SEL = 'run_id=~"$run_id", game=~"$game"'
# The labels that identify one run's series (metrics.LABELS): vector matching keeps them.
RUN = "run_id, game, model, readout, sweep, seed"


def query(expr: str, legend: str, ref: str = "A") -> prometheus.Dataquery:
    return (
        prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)
    )


def lines(
    title: str,
    description: str,
    targets: list[prometheus.Dataquery],
    unit: str = "short",
    width: int = 8,
    soft_min: float | None = None,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(targets)
        .unit(unit)
        .span(width)
        .height(8)
        .line_width(1)
        .fill_opacity(8)
        .show_points(common.VisibilityMode.NEVER)
        .span_nulls(True)  # gauges change once per training iteration
        .legend(
            cb.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    if soft_min is not None:
        panel = panel.axis_soft_min(soft_min)
    return panel


def single_stat(
    title: str, description: str, target: prometheus.Dataquery, unit: str
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(target)
        .unit(unit)
        .span(6)
        .height(4)
        .graph_mode(common.BigValueGraphMode.AREA)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
    )


def variables() -> list[db.QueryVariable | db.DatasourceVariable]:
    datasource = (
        db.DatasourceVariable("datasource")
        .label("Prometheus")
        .description("The Prometheus that scrapes the runs (default: the provisioned one)")
        .type("prometheus")
        .current(VariableOption(text=PROVISIONED_DATASOURCE_UID, value=PROVISIONED_DATASOURCE_UID))
    )
    run_id = (
        db.QueryVariable("run_id")
        .label("run")
        .description("Training runs (dsqn train --run-id); pick several to compare DSQN and DQN")
        .datasource(DATASOURCE)
        .query("label_values(dsqn_env_steps_total, run_id)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_DESC)  # run ids end in a timestamp: newest first
        .multi(True)
    )
    game = (
        db.QueryVariable("game")
        .label("game")
        .description("Atari game (or Gymnasium env id) of the chosen runs")
        .datasource(DATASOURCE)
        .query('label_values(dsqn_env_steps_total{run_id=~"$run_id"}, game)')
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )
    return [datasource, run_id, game]


def summary_row(d: db.Dashboard) -> None:
    d.with_row(db.Row("Run"))
    d.with_panel(
        single_stat(
            "Agent steps",
            "Agent steps sampled by all env runners (dsqn_env_steps_total)",
            query(f"dsqn_env_steps_total{{{SEL}}}", "{{run_id}}"),
            "short",
        )
    )
    d.with_panel(
        single_stat(
            "Evaluation return",
            "Mean return of the latest evaluation (ε 0.05, whole games, unclipped)",
            query(f"dsqn_eval_return_mean{{{SEL}}}", "{{run_id}}"),
            "none",
        )
    )
    d.with_panel(
        single_stat(
            "Energy vs DQN twin",
            "Estimated energy per inference of the network over that of its ReLU DQN twin",
            query(
                f"dsqn_energy_per_inference_joules{{{SEL}}}"
                f" / dsqn_dqn_twin_energy_per_inference_joules{{{SEL}}}",
                "{{run_id}}",
            ),
            "percentunit",
        )
    )
    d.with_panel(
        single_stat(
            "Silent LIF layers",
            "LIF layers that fired no spike (or spiked at every step) for silent_layer_patience "
            "updates after learning starts: above 0 the spiking network is not learning",
            query(f"dsqn_silent_layers{{{SEL}}}", "{{run_id}}"),
            "short",
        )
    )
    d.with_panel(
        single_stat(
            "Healthy env runners",
            "Env-runner actors alive now (a crashed one is restarted by RLlib)",
            query(f"dsqn_env_runners_healthy{{{SEL}}}", "{{run_id}}"),
            "short",
        )
    )


def return_row(d: db.Dashboard) -> None:
    d.with_row(db.Row("Return"))
    d.with_panel(
        lines(
            "Return: training and evaluation",
            "Training: mean unclipped return of the last 100 training episodes. Evaluation: "
            "mean and max over the latest evaluation's whole games (ε 0.05).",
            [
                query(f"dsqn_episode_return{{{SEL}}}", "{{run_id}} train", "A"),
                query(f"dsqn_eval_return_mean{{{SEL}}}", "{{run_id}} eval mean", "B"),
                query(f"dsqn_eval_return_max{{{SEL}}}", "{{run_id}} eval max", "C"),
            ],
            width=12,
        )
    )
    d.with_panel(
        lines(
            "Episode length",
            "Mean length in agent steps of the last 100 training episodes",
            [query(f"dsqn_episode_length{{{SEL}}}", "{{run_id}}")],
            width=6,
        )
    )
    d.with_panel(
        lines(
            "Episodes per minute",
            "Training episodes finished per minute (life loss ends an episode in training)",
            [query(f"rate(dsqn_episodes_total{{{SEL}}}[$__rate_interval]) * 60", "{{run_id}}")],
            unit="opm",  # per minute
            width=6,
            soft_min=0,
        )
    )


def spikes_row(d: db.Dashboard) -> None:
    d.with_row(db.Row("Spikes and energy"))
    rates = f"dsqn_firing_rate{{{SEL}}}"
    d.with_panel(
        lines(
            "Firing rate per layer",
            "Spikes per neuron per simulation step of each LIF layer (actor inference)",
            [query(rates, "{{run_id}} {{layer}}")],
            unit="percentunit",
            width=12,
            soft_min=0,
        )
    )
    d.with_panel(
        heatmap.Panel()
        .title("Firing rate per layer (heatmap)")
        .description("One row per LIF layer, colour = spikes per neuron per step")
        .datasource(DATASOURCE)
        .with_target(query(rates, "{{run_id}} {{layer}}").format(PromQueryFormat.TIME_SERIES))
        .span(12)
        .height(8)
        .calculate(False)  # the series are the rows: no bucketing of values
        .rows_frame(heatmap.RowsHeatmapOptions().layout(common.HeatmapCellLayout.UNKNOWN))
        .color(
            heatmap.HeatmapColorOptions()
            .mode(heatmap_model.HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .scale(heatmap_model.HeatmapColorScale.LINEAR)
            .min(0)
        )
        .filter_values(heatmap.FilterValueRange().le(-1))  # show 0: a silent layer matters
        .cell_values(heatmap.CellValues().unit("percentunit"))
        .y_axis(heatmap.YAxisConfig().unit("short"))
        .show_legend()
    )
    d.with_panel(
        lines(
            "Energy per inference: network vs DQN twin",
            "Synaptic-operation estimate (45 nm: MAC 4.6 pJ, AC 0.9 pJ) of one inference of the "
            "trained network, and of the same-shaped ReLU DQN (all MACs)",
            [
                query(f"dsqn_energy_per_inference_joules{{{SEL}}}", "{{run_id}} {{model}}", "A"),
                query(
                    f"dsqn_dqn_twin_energy_per_inference_joules{{{SEL}}}",
                    "{{run_id}} DQN twin",
                    "B",
                ),
            ],
            unit="joule",
            width=12,
            soft_min=0,
        )
    )
    d.with_panel(
        lines(
            "Spikes per inference",
            "Spikes one inference emits over all LIF layers and T steps",
            [query(f"dsqn_spikes_per_inference{{{SEL}}}", "{{run_id}}")],
            width=12,
            soft_min=0,
        )
    )


def throughput_row(d: db.Dashboard) -> None:
    d.with_row(db.Row("Throughput"))
    per_runner = f"rate(dsqn_runner_env_steps_total{{{SEL}}}[$__rate_interval])"
    d.with_panel(
        lines(
            "Agent steps/s per env runner and in total",
            "Rate of each runner's sampled agent steps, and of all runners together",
            [
                query(per_runner, "{{run_id}} runner {{runner}}", "A"),
                query(
                    f"rate(dsqn_env_steps_total{{{SEL}}}[$__rate_interval])",
                    "{{run_id}} total",
                    "B",
                ),
            ],
            unit="ops",  # per second
            width=12,
            soft_min=0,
        )
    )
    # Frames = agent steps x frame skip; the run's own frames/steps ratio gives the frame skip
    # (4 on Atari, 1 on vector envs) without writing it into the dashboard.
    frame_skip = f"(dsqn_env_frames_total{{{SEL}}} / dsqn_env_steps_total{{{SEL}}})"
    d.with_panel(
        lines(
            "Emulator frames/s per env runner and in total",
            "Agent steps x frame skip per second",
            [
                query(
                    f"{per_runner} * on ({RUN}) group_left () {frame_skip}",
                    "{{run_id}} runner {{runner}}",
                    "A",
                ),
                query(
                    f"rate(dsqn_env_frames_total{{{SEL}}}[$__rate_interval])",
                    "{{run_id}} total",
                    "B",
                ),
            ],
            unit="ops",  # per second
            width=12,
            soft_min=0,
        )
    )
    d.with_panel(
        lines(
            "Learner updates/s",
            "Gradient updates per second (the runners are throttled to the replay ratio)",
            [
                query(
                    f"rate(dsqn_learner_updates_total{{{SEL}}}[$__rate_interval])",
                    "{{run_id}}",
                )
            ],
            unit="ops",  # per second
            width=12,
            soft_min=0,
        )
    )
    d.with_panel(
        lines(
            "Learner samples/s",
            "Replay transitions trained on per second (updates x batch size)",
            [query(f"dsqn_learner_samples_per_second{{{SEL}}}", "{{run_id}}")],
            unit="ops",  # per second
            width=12,
            soft_min=0,
        )
    )


def health_row(d: db.Dashboard) -> None:
    d.with_row(db.Row("Learner health"))
    d.with_panel(
        lines(
            "TD loss",
            "TD loss of the learner's last update",
            [query(f"dsqn_td_loss{{{SEL}}}", "{{run_id}}")],
            width=8,
        )
    )
    d.with_panel(
        lines(
            "Q values",
            "Mean and max Q of the taken actions in the last training batch",
            [
                query(f"dsqn_q_mean{{{SEL}}}", "{{run_id}} mean", "A"),
                query(f"dsqn_q_max{{{SEL}}}", "{{run_id}} max", "B"),
            ],
            width=8,
        )
    )
    d.with_panel(
        lines(
            "Exploration ε",
            "ε of the env runners' ε-greedy actions",
            [query(f"dsqn_epsilon{{{SEL}}}", "{{run_id}}")],
            width=8,
            soft_min=0,
        )
    )
    d.with_panel(
        lines(
            "Target-network syncs",
            "Target-network syncs so far",
            [query(f"dsqn_target_syncs_total{{{SEL}}}", "{{run_id}}")],
            width=8,
            soft_min=0,
        )
    )
    d.with_panel(
        lines(
            "Replay occupancy",
            "Transitions in the replay memory over its capacity",
            [query(f"dsqn_replay_occupancy_ratio{{{SEL}}}", "{{run_id}}")],
            unit="percentunit",
            width=8,
            soft_min=0,
        )
    )
    d.with_panel(
        lines(
            "Weight-sync latency",
            "Time of the last publication of the learner's weights to the env runners",
            [query(f"dsqn_weight_sync_seconds{{{SEL}}}", "{{run_id}}")],
            unit="s",
            width=8,
            soft_min=0,
        )
    )
    d.with_panel(
        lines(
            "Time since checkpoint",
            "Seconds since the last full checkpoint was written (since the start before the first)",
            [query(f"time() - dsqn_last_checkpoint_timestamp_seconds{{{SEL}}}", "{{run_id}}")],
            unit="s",
            width=12,
            soft_min=0,
        )
    )
    d.with_panel(
        lines(
            "Restarts, skipped updates",
            "Env-runner actors restarted after a failure and learner updates skipped for an "
            "inf or NaN gradient (totals, 0 in a healthy run), and env runners healthy now",
            [
                query(f"dsqn_runner_restarts_total{{{SEL}}}", "{{run_id}} restarts", "A"),
                query(f"dsqn_env_runners_healthy{{{SEL}}}", "{{run_id}} healthy", "B"),
                query(
                    f"dsqn_nonfinite_grad_skips_total{{{SEL}}}", "{{run_id}} skipped updates", "C"
                ),
            ],
            width=12,
            soft_min=0,
        )
    )


def run_dashboard() -> db.Dashboard:
    d = (
        db.Dashboard("DSQN training run")
        .uid("dsqn-run")
        .description(
            "One or more dsqn train runs: return, spikes and energy, throughput, learner health"
        )
        .tags(["dsqn", "rllib", "snn"])
        .editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .time("now-1h", "now")
        .refresh("10s")
        .timezone("browser")
        .variables(variables())
    )
    for row in (summary_row, return_row, spikes_row, throughput_row, health_row):
        row(d)
    return d


DASHBOARDS: dict[str, Callable[[], db.Dashboard]] = {"dsqn-run.json": run_dashboard}


def render(build: Callable[[], db.Dashboard]) -> str:
    """The dashboard as Grafana JSON: stable key order, two-space indent, final newline."""
    dashboard = build().build()
    # Panel ids in layout order (the builders leave them 0): links and alerts refer to them.
    flat = [
        p for top in dashboard.panels or [] for p in (top, *(getattr(top, "panels", None) or []))
    ]
    for number, panel in enumerate(flat, 1):
        panel.id_val = number
    model = json.loads(json.dumps(dashboard, cls=JSONEncoder))
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare with the files")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path, text = HERE / name, render(build)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"out of date (run python dashboards/generate.py): {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
