"""What collecting metrics costs a training run, measured side by side in one run:

1. the same short ``dsqn train`` job (``Trainer``, real Ray actors, Pong) with its Prometheus
   endpoint on and scraped every second (by Debian's ``prometheus`` when installed, using the
   shipped ``dashboards/prometheus.yml``; else by a small HTTP loop in its own process), and
   with metrics off, alternating off/on and on/off (the machine's load drifts; pairs in both
   orders cancel a linear drift). Throughput is read from each run's ``metrics.jsonl`` after
   learning has started;
2. the exporter's own CPU per training iteration (``record`` + the energy estimate) and per
   scrape, timed directly: a noise-free bound on (1).

    python benchmarks/bench_metrics.py                      # 2 pairs, DSQN T=2, 2 runners
    python benchmarks/bench_metrics.py --pairs 5 --total-steps 8000

Prints env steps/s and updates/s of every run, the medians, and the on/off ratio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from dsqn_rllib.config import TrainConfig
from dsqn_rllib.ops.metrics import PrometheusExporter
from dsqn_rllib.ops.runtime import keep_freed_memory_mapped
from dsqn_rllib.snn.energy import energy_report
from dsqn_rllib.snn.networks import build_q_network

SCRAPE_CONFIG = Path(__file__).resolve().parents[1] / "dashboards" / "prometheus.yml"
# A scraper for machines without Prometheus: GET the endpoint every interval, in its own process.
HTTP_LOOP = """
import sys, time, urllib.request
url, interval = sys.argv[1], float(sys.argv[2])
while True:
    try:
        urllib.request.urlopen(url, timeout=interval).read()
    except OSError:
        pass
    time.sleep(interval)
"""


@dataclass
class Throughput:
    env_steps_per_s: float
    updates_per_s: float
    iterations_per_s: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Scraper:
    """Something scraping ``127.0.0.1:port/metrics`` every ``interval`` seconds."""

    def __init__(self, port: int, interval: float, workdir: Path) -> None:
        self.prometheus = shutil.which("prometheus")
        self.api: str | None = None
        if self.prometheus is not None:
            config = yaml.safe_load(SCRAPE_CONFIG.read_text())
            config["global"]["scrape_interval"] = f"{interval:g}s"
            (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "dsqn"]
            job["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
            (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
            web = free_port()
            self.api = f"http://127.0.0.1:{web}/api/v1"
            cmd = [
                self.prometheus,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{web}",
            ]
        else:
            cmd = [
                sys.executable,
                "-c",
                HTTP_LOOP,
                f"http://127.0.0.1:{port}/metrics",
                str(interval),
            ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def samples(self, run_id: str) -> int | None:
        """How many scrapes of the run Prometheus stored (None without Prometheus)."""
        if self.api is None:
            return None
        q = urllib.parse.urlencode(
            {"query": f'count_over_time(dsqn_env_steps_total{{run_id="{run_id}"}}[1h])'}
        )
        with urllib.request.urlopen(f"{self.api}/query?{q}", timeout=10) as r:
            result = json.loads(r.read())["data"]["result"]
        return int(float(result[0]["value"][1])) if result else 0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def steady_throughput(metrics_jsonl: Path, from_step: int) -> Throughput:
    """Rates between the first and last iteration at or past ``from_step`` env steps."""
    rows = [json.loads(line) for line in metrics_jsonl.read_text().splitlines()]
    rows = [r for r in rows if r["env_steps"] >= from_step]
    first, last = rows[0], rows[-1]
    dt = last["time"] - first["time"]
    if len(rows) < 3 or dt <= 0:
        raise RuntimeError(f"too few iterations past {from_step} steps: raise --total-steps")
    return Throughput(
        (last["env_steps"] - first["env_steps"]) / dt,
        (last["updates"] - first["updates"]) / dt,
        (len(rows) - 1) / dt,
    )


def train_once(cfg: TrainConfig, metrics: bool, args: argparse.Namespace, root: Path) -> Throughput:
    from dsqn_rllib.run import Trainer

    run_id = cfg.run_id or ""
    scraper = None
    if metrics:
        cfg.metrics_port = free_port()
        workdir = root / f"{run_id}-scraper"
        workdir.mkdir()
        scraper = Scraper(cfg.metrics_port, args.scrape_interval, workdir)
    try:
        Trainer(cfg, out=lambda line: None).run()
        scrapes = scraper.samples(run_id) if scraper is not None else None
    finally:
        if scraper is not None:
            scraper.stop()
    result = steady_throughput(root / run_id / "metrics.jsonl", args.learning_starts + 512)
    seen = f", {scrapes} scrapes stored" if scrapes is not None else ""
    print(
        f"  {run_id:<14}: {result.env_steps_per_s:8,.1f} env steps/s"
        f" {result.updates_per_s:7,.2f} updates/s{seen}",
        flush=True,
    )
    return result


def exporter_cost(cfg: TrainConfig, report: dict, repeats: int = 300) -> tuple[float, float]:
    """Seconds of CPU one training iteration's export and one scrape take (timed directly)."""
    obs_shape, num_actions = (4, 84, 84), 6
    net = build_q_network(cfg.model, obs_shape, num_actions, **cfg.model_options())
    labels = {"run_id": "cost", "game": "pong", "model": "dsqn", "readout": "max-mem"}
    exporter = PrometheusExporter(labels, 0)
    try:
        start = time.process_time()
        for _ in range(repeats):  # what Trainer._export does every iteration
            e = energy_report(net, report["firing_rates"])
            exporter.record(
                report, frame_skip=4, energy_pj=e.energy_pj, twin_energy_pj=e.ann_energy_pj
            )
        per_iteration = (time.process_time() - start) / repeats
        url = f"http://127.0.0.1:{exporter.port}/metrics"
        start = time.process_time()  # server thread and client: both in this process
        for _ in range(repeats):
            with urllib.request.urlopen(url, timeout=10) as r:
                r.read()
        per_scrape = (time.process_time() - start) / repeats
    finally:
        exporter.close()
    return per_iteration, per_scrape


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--game", default="pong")
    parser.add_argument("--T", type=int, default=2)
    parser.add_argument("--runners", type=int, default=2)
    parser.add_argument("--envs", type=int, default=2, help="envs per runner")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--train-every", type=int, default=16)
    parser.add_argument("--learning-starts", type=int, default=500)
    parser.add_argument("--total-steps", type=int, default=2500)
    parser.add_argument("--pairs", type=int, default=2, help="on/off pairs, in both orders")
    parser.add_argument("--scrape-interval", type=float, default=1.0, help="seconds")
    args = parser.parse_args()
    keep_freed_memory_mapped()
    from dsqn_rllib.run import ensure_ray

    ensure_ray(args.runners)  # one Ray for every run: each run builds its own actors
    scraper = "prometheus" if shutil.which("prometheus") else "an HTTP loop"
    print(
        f"dsqn T={args.T} on {args.game}, {args.runners} runners x {args.envs} envs, batch "
        f"{args.batch} every {args.train_every} env steps, {args.total_steps:,} steps per run; "
        f"metrics on = exporter + {scraper} scraping every {args.scrape_interval:g} s"
    )
    runs: dict[bool, list[Throughput]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="bench_metrics_") as tmp:
        root = Path(tmp)
        for pair in range(args.pairs):
            for metrics in (False, True) if pair % 2 == 0 else (True, False):
                cfg = TrainConfig(
                    game=args.game, num_env_runners=args.runners, envs_per_runner=args.envs,
                    train_batch_size=args.batch, train_every=args.train_every,
                    learning_starts=args.learning_starts, buffer_size=20_000,
                    total_steps=args.total_steps, eval_interval=0, checkpoint_interval=0,
                    run_dir=str(root), run_id=f"{'on' if metrics else 'off'}-{pair}",
                ).with_spiking(T=args.T)  # fmt: skip
                runs[metrics].append(train_once(cfg, metrics, args, root))
        last = json.loads((root / "on-0" / "metrics.jsonl").read_text().splitlines()[-1])

    def median(metrics: bool, field: str) -> float:
        return statistics.median(getattr(t, field) for t in runs[metrics])

    print()
    for field, name in (("env_steps_per_s", "env steps/s"), ("updates_per_s", "updates/s")):
        off, on = median(False, field), median(True, field)
        print(f"  median {name:<12}: off {off:9,.2f}  on {on:9,.2f}  on/off {on / off:6.3f}")
    # Each pair ran back to back: its ratio is less exposed to the load drifting between pairs.
    paired = [
        on.env_steps_per_s / off.env_steps_per_s
        for off, on in zip(runs[False], runs[True], strict=True)
    ]
    print(
        f"  on/off env steps/s per pair: {', '.join(f'{r:.3f}' for r in paired)}"
        f" (median {statistics.median(paired):.3f})"
    )
    per_iteration, per_scrape = exporter_cost(cfg, last)
    iterations = median(True, "iterations_per_s")
    busy = per_iteration * iterations + per_scrape / args.scrape_interval
    print(
        f"  exporter CPU: {per_iteration * 1e3:.2f} ms per iteration (record + energy estimate), "
        f"{per_scrape * 1e3:.2f} ms per scrape -> {busy * 1e3:.2f} ms per second of training "
        f"({busy:.2%} of one core) at {iterations:.2f} iterations/s"
    )


if __name__ == "__main__":
    main()
