"""The Grafana dashboards against a real Prometheus scraping a real training run.

Every panel query of every ``dashboards/*.json`` is evaluated by Prometheus's HTTP API over
the series of a short ``dsqn train --game pong`` job, with the template variables filled in as
Grafana would; each must return data. The JSON must be what ``dashboards/generate.py`` writes,
and the shipped scrape config must pass ``promtool check config``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

DASHBOARDS = Path(__file__).resolve().parents[1] / "dashboards"
SCRAPE_CONFIG = DASHBOARDS / "prometheus.yml"
DATASOURCE_FILE = DASHBOARDS / "provisioning" / "datasources" / "prometheus.yml"
PROVIDER_FILE = DASHBOARDS / "provisioning" / "dashboards" / "dsqn.yml"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
NEEDS_PROMETHEUS = pytest.mark.skipif(
    PROMETHEUS is None, reason="no prometheus binary (Debian: apt-get install prometheus)"
)
NEEDS_PROMTOOL = pytest.mark.skipif(
    PROMTOOL is None, reason="no promtool binary (Debian: apt-get install prometheus)"
)

# The test's Prometheus scrapes every second. Grafana's $__rate_interval is
# max($__interval + scrape interval, 4 x scrape interval): its smallest value, 4 s, is the
# hardest case for rate() (it needs two samples in the window).
SCRAPE_INTERVAL_S = 1
RATE_INTERVAL = f"{4 * SCRAPE_INTERVAL_S}s"
RUN_ID = "dash-pong"
GAME = "pong"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboards_generate", DASHBOARDS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL expression) of every target of every panel."""
    return [
        (panel["title"], target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


# --- the JSON is generated, and wired to the provisioned datasource ------------------------


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="grafana-foundation-sdk (the generator) needs Python 3.11+"
)
def test_committed_dashboards_are_exactly_the_generators_output() -> None:
    generate = load_generator()
    assert [p.name for p in dashboard_files()] == sorted(generate.DASHBOARDS), (
        "every dashboards/*.json must come from dashboards/generate.py"
    )
    for name, build in generate.DASHBOARDS.items():
        committed = (DASHBOARDS / name).read_text()
        assert committed == generate.render(build), (
            f"dashboards/{name} differs from the generator's output: edit dashboards/generate.py "
            "and run `python dashboards/generate.py`, never the JSON by hand"
        )
    assert generate.main(["--check"]) == 0


def test_dashboards_use_the_provisioned_datasource_and_scrape_interval() -> None:
    datasource = yaml.safe_load(DATASOURCE_FILE.read_text())["datasources"][0]
    assert datasource["uid"] == "dsqn-prometheus" and datasource["type"] == "prometheus"
    assert datasource["url"] == "http://127.0.0.1:9090"
    scrape = yaml.safe_load(SCRAPE_CONFIG.read_text())
    # Grafana's $__rate_interval comes from timeInterval: it must be the real scrape interval.
    assert datasource["jsonData"]["timeInterval"] == scrape["global"]["scrape_interval"]
    provider = yaml.safe_load(PROVIDER_FILE.read_text())["providers"][0]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"

    for path in dashboard_files():
        dashboard = json.loads(path.read_text())
        refs = [p["datasource"] for p in panels(dashboard) if p.get("type") != "row"]
        refs += [t["datasource"] for p in panels(dashboard) for t in p.get("targets", [])]
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        refs += [v["datasource"] for v in variables.values() if v["type"] == "query"]
        # Every query goes through the datasource variable, which defaults to the provisioned one.
        assert refs and all(r == {"type": "prometheus", "uid": "${datasource}"} for r in refs)
        choice = variables["datasource"]
        assert choice["type"] == "datasource" and choice["query"] == "prometheus"
        assert choice["current"]["value"] == datasource["uid"]
        assert {"run_id", "game"} <= set(variables), path.name
        for title, expr in panel_queries(dashboard):
            assert '$run_id"' in expr, f"{path.name}: {title!r} ignores the run variable"
        ids = [p["id"] for p in panels(dashboard)]
        assert len(set(ids)) == len(ids) and 0 not in ids, f"{path.name}: panel ids {ids}"


@NEEDS_PROMTOOL
def test_shipped_scrape_config_passes_promtool() -> None:
    check = subprocess.run(
        [PROMTOOL, "check", "config", str(SCRAPE_CONFIG)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    jobs = {
        job["job_name"]: job for job in yaml.safe_load(SCRAPE_CONFIG.read_text())["scrape_configs"]
    }
    # The documented defaults: the driver's `--metrics-port 9464`, Ray's discovery file.
    assert jobs["dsqn"]["static_configs"] == [{"targets": ["127.0.0.1:9464"]}]
    assert jobs["ray"]["file_sd_configs"] == [
        {"files": ["/tmp/ray/prom_metrics_service_discovery.json"]}
    ]
    from dsqn_rllib.ops.metrics import SCRAPE_TARGETS_DIR

    assert jobs["dsqn-sweep"]["file_sd_configs"] == [{"files": [f"{SCRAPE_TARGETS_DIR}/*.json"]}]


# --- a real Prometheus scrapes a real run -----------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render_scrape_config(metrics_port: int) -> str:
    """The shipped config, scraping the test's run on ``metrics_port`` every second.

    Only the dsqn job's one target and the intervals change; every other line is the real
    file (the Ray job included)."""
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    config["global"]["scrape_interval"] = f"{SCRAPE_INTERVAL_S}s"
    config["global"]["evaluation_interval"] = f"{SCRAPE_INTERVAL_S}s"
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "dsqn"]
    assert job["static_configs"] == [{"targets": ["127.0.0.1:9464"]}]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{metrics_port}"]}]
    return yaml.safe_dump(config, sort_keys=False)


class PrometheusServer:
    """Debian's prometheus on a free 127.0.0.1 port with its own storage."""

    def __init__(self, config: Path, storage: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={config}",
                f"--storage.tsdb.path={storage}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"prometheus did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)

    def api(self, path: str, **params: str | float) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:  # Prometheus says why in the body
            raise AssertionError(f"{path} {params}: {e.code} {e.read().decode()}") from None
        assert body["status"] == "success", body
        return body["data"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


def grafana_regex_value(value: str) -> str:
    """A multi-value variable's value as Grafana writes it into a PromQL regex matcher: regex
    metacharacters escaped, the backslash doubled for the string literal."""
    return re.sub(r"([\\^$*+?.()|{}\[\]])", r"\\\\\1", value)


def substitute(expr: str) -> str:
    """Template variables as Grafana fills them for one run of one game."""
    filled = (
        expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$run_id", grafana_regex_value(RUN_ID))
        .replace("$game", grafana_regex_value(GAME))
    )
    assert "$" not in filled, f"a template variable the test does not know: {filled}"
    return filled


@NEEDS_PROMETHEUS
@pytest.mark.slow
def test_every_panel_query_returns_data_from_a_real_run(tmp_path: Path) -> None:
    metrics_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(render_scrape_config(metrics_port))
    if PROMTOOL is not None:
        check = subprocess.run([PROMTOOL, "check", "config", str(config)], capture_output=True)
        assert check.returncode == 0, check.stdout + check.stderr
    prometheus = PrometheusServer(config, tmp_path / "tsdb", tmp_path / "prometheus.log")
    try:
        started = time.time()
        # Tiny budgets: episodes capped at 400 frames (100 agent steps) so training episodes
        # end and the evaluation is quick; evaluations and checkpoints every 400 steps so both
        # happen while the run (and so the scrape target) is alive.
        args = [
            "train", "--game", GAME, "--T", "2", "--num-env-runners", "2",
            "--envs-per-runner", "2", "--total-steps", "1200", "--learning-starts", "400",
            "--train-batch-size", "8", "--train-every", "32", "--buffer-size", "2000",
            "--target-update-period", "200", "--max-episode-frames", "400",
            "--eval-interval", "400", "--eval-episodes", "1", "--checkpoint-interval", "400",
            "--metrics-port", str(metrics_port), "--run-dir", str(tmp_path),
            "--run-id", RUN_ID,
        ]  # fmt: skip
        # Our own local Ray, never a cluster another process started (RAY_ADDRESS joins one).
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        run = subprocess.run(
            [sys.executable, "-m", "dsqn_rllib.cli", *args],
            capture_output=True, text=True, timeout=300, env={**env, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
        assert f"metrics at http://127.0.0.1:{metrics_port}/metrics" in run.stdout

        # The endpoint is gone now: evaluate at the last scrape that saw an evaluation, while
        # the run was alive (after it, Prometheus marks the run's series stale).
        seen = prometheus.api(
            "query_range",
            query=f'dsqn_eval_return_mean{{run_id="{RUN_ID}"}}',
            start=started, end=time.time(), step=SCRAPE_INTERVAL_S,
        )["result"]  # fmt: skip
        assert seen, "no evaluation was scraped while the run was alive"
        at = float(seen[0]["values"][-1][0])
        # The run's final values were scraped before it closed the endpoint: its last evaluation
        # and its final step count (both set moments before the end).
        assert "waiting for a last scrape" in run.stdout
        run_dir = tmp_path / RUN_ID
        last_eval = json.loads((run_dir / "evaluations.jsonl").read_text().splitlines()[-1])
        assert float(seen[0]["values"][-1][1]) == pytest.approx(last_eval["mean"])
        last_report = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
        steps = prometheus.api(
            "query_range",
            query=f'dsqn_env_steps_total{{run_id="{RUN_ID}"}}',
            start=started, end=time.time(), step=SCRAPE_INTERVAL_S,
        )["result"]  # fmt: skip
        assert float(steps[0]["values"][-1][1]) == last_report["env_steps"] >= 1200

        # Template variables: query-based, they must list this run and game.
        for path in dashboard_files():
            for variable in json.loads(path.read_text())["templating"]["list"]:
                if variable["type"] != "query":
                    continue  # the datasource choice: checked against the provisioning above
                selector, label = re.fullmatch(
                    r"label_values\((\w+(?:\{.*\})?), (\w+)\)", variable["query"]
                ).groups()
                values = prometheus.api(
                    f"label/{label}/values",
                    **{"match[]": substitute(selector)},
                    start=started,
                    end=at,
                )
                assert {"run_id": RUN_ID, "game": GAME}[label] in values, (variable["name"], values)

        results: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for path in dashboard_files():
            for title, expr in panel_queries(json.loads(path.read_text())):
                data = prometheus.api("query", query=substitute(expr), time=at)
                results[path.name, title, expr] = data["result"]
        empty = [
            f"{name}: {title!r}: {expr}" for (name, title, expr), r in results.items() if not r
        ]
        assert not empty, "panel queries without data:\n" + "\n".join(empty)

        # And the data says what the panels claim.
        def series(title: str, metric_part: str) -> list[dict[str, Any]]:
            return next(
                r for (_, t, expr), r in results.items() if t == title and metric_part in expr
            )

        per_runner = series("Agent steps/s per env runner and in total", "runner_env_steps")
        assert len({s["metric"]["runner"] for s in per_runner}) == 2  # both runners sampled
        layers = series("Firing rate per layer (heatmap)", "firing_rate")
        assert {s["metric"]["layer"] for s in layers} == {"conv1", "conv2", "conv3", "fc"}
        energy = series("Energy vs DQN twin", "energy")
        # ACs (0.9 pJ) x rate x T=2 undercut MACs (4.6 pJ) whatever the rates are.
        assert 0 < float(energy[0]["value"][1]) < 1
        frames = series("Emulator frames/s per env runner and in total", "group_left")
        steps = {s["metric"]["runner"]: float(s["value"][1]) for s in per_runner}
        for s in frames:  # frame skip 4 on Atari
            assert float(s["value"][1]) == pytest.approx(4 * steps[s["metric"]["runner"]])
        assert float(series("Restarts, skipped updates", "restarts")[0]["value"][1]) == 0
        assert float(series("Restarts, skipped updates", "nonfinite")[0]["value"][1]) == 0
        # A few updates into learning: far from silent_layer_patience, nothing is flagged.
        assert float(series("Silent LIF layers", "silent_layers")[0]["value"][1]) == 0
    finally:
        prometheus.stop()
