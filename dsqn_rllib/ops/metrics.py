"""Metrics of a training run in the Prometheus data model, served by ``prometheus_client``.

The driver (learner) process owns one ``PrometheusExporter``; after every training iteration
the trainer hands it the pipeline report and it updates these series (namespace ``dsqn_``),
labelled with ``run_id``, ``game``, ``model`` and ``readout`` (a handful of label sets per run;
per-runner series carry a ``runner`` index, per-layer ones a ``layer`` name):

    return       dsqn_episode_return, dsqn_episode_length, dsqn_episodes_total,
                 dsqn_eval_return_mean, dsqn_eval_return_max
    spikes       dsqn_firing_rate{layer}, dsqn_silent_layers, dsqn_spikes_per_inference,
                 dsqn_energy_per_inference_joules, dsqn_dqn_twin_energy_per_inference_joules
    throughput   dsqn_env_steps_total, dsqn_env_frames_total, dsqn_env_steps_per_second,
                 dsqn_runner_env_steps_total{runner}, dsqn_learner_updates_total,
                 dsqn_learner_updates_per_second, dsqn_learner_samples_per_second,
                 dsqn_weight_sync_seconds, dsqn_replay_size, dsqn_replay_occupancy_ratio
    health       dsqn_td_loss, dsqn_q_mean, dsqn_q_max, dsqn_epsilon, dsqn_target_syncs_total,
                 dsqn_nonfinite_grad_skips_total, dsqn_runner_restarts_total,
                 dsqn_env_runners_healthy, dsqn_last_checkpoint_timestamp_seconds

The run's counters exist from the start at 0 (a run without a restart still has
``dsqn_runner_restarts_total 0``), so dashboards and alerts see 0, not "no data".

The endpoint binds 127.0.0.1 unless told otherwise. A run's last values (its final evaluation)
are set moments before the run ends: ``wait_for_scrape`` lets the trainer keep the endpoint up
until a scraper has read them.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from itertools import pairwise
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.metrics_core import Metric

# A run's identity on every series; sweep and seed tell a sweep's trials apart ("" outside one).
LABELS = ("run_id", "game", "model", "readout", "sweep", "seed")


class _Marker:
    """A collector without series: the registry calls it in every scrape, in its place."""

    def __init__(self, note: Callable[[], None]) -> None:
        self._note = note

    def describe(self) -> list[Metric]:
        return []  # no series: registration checks no names and does not count as a scrape

    def collect(self) -> Iterator[Metric]:
        self._note()
        return iter(())


class ScrapeClock:
    """Which scrapes have read every series of the registry, and when each of them began.

    Two markers bracket the series: ``opening`` is registered before them and runs first in a
    scrape, ``closing`` after them and runs once every value has been read (the response is
    then written from what was read). Prometheus does not overlap scrapes of one target, but
    the server is threaded, so each scrape is followed by its thread.
    """

    def __init__(self, remembered: int = 8) -> None:
        self._changed = threading.Condition()
        self._open: dict[int, float] = {}  # thread -> when its scrape began
        self._began: deque[float] = deque(maxlen=remembered)  # of the complete scrapes
        self.count = 0  # complete scrapes
        self.opening = _Marker(self._scrape_begins)
        self.closing = _Marker(self._scrape_ends)

    def _scrape_begins(self) -> None:
        with self._changed:
            self._open[threading.get_ident()] = time.monotonic()

    def _scrape_ends(self) -> None:
        with self._changed:
            began = self._open.pop(threading.get_ident(), None)
            if began is not None:
                self.count += 1
                self._began.append(began)
                self._changed.notify_all()

    def longest_recent_gap(self) -> float | None:
        """Longest time between the starts of recent scrapes (None before the second)."""
        with self._changed:
            began = list(self._began)
        return max((b - a for a, b in pairwise(began)), default=None)

    def seconds_since_last(self) -> float | None:
        """Seconds since the last complete scrape began (None before the first)."""
        with self._changed:
            return time.monotonic() - self._began[-1] if self._began else None

    def wait_for_read_since(self, since: float, timeout_s: float) -> bool:
        """Block until a scrape that began at ``since`` (``time.monotonic()``) or later has read
        every series, at most ``timeout_s``; True when one has."""
        with self._changed:
            return self._changed.wait_for(
                lambda: bool(self._began) and self._began[-1] >= since, timeout=timeout_s
            )


class PrometheusExporter:
    """Prometheus series of one run, served at ``http://host:port/metrics``."""

    def __init__(self, labels: Mapping[str, str], port: int, host: str = "127.0.0.1") -> None:
        self.labels = {k: str(labels.get(k, "")) for k in LABELS}
        self.registry = CollectorRegistry()
        self.scrapes = ScrapeClock()
        self.registry.register(self.scrapes.opening)  # before every series (see ScrapeClock)
        # The default registry's process and Python series (CPU, memory, open fds, GC): a
        # custom registry starts without them.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as err:  # checked before Ray starts (preflight); taken since then
            from dsqn_rllib.errors import ConfigError, first_line

            raise ConfigError(
                f"cannot serve metrics on {host}:{port}: {first_line(err)}; pick another "
                "--metrics-port "
                "(0: any free port) or --metrics-host"
            ) from None
        self.port = int(self._server.server_port)
        self.host = host
        r = self.registry

        def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> Gauge:
            return Gauge(f"dsqn_{name}", doc, (*LABELS, *extra), registry=r)

        def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> Counter:
            return Counter(f"dsqn_{name}", doc, (*LABELS, *extra), registry=r)

        self.episode_return = gauge(
            "episode_return", "Mean unclipped return of the last 100 training episodes"
        )
        self.episode_length = gauge(
            "episode_length", "Mean length (agent steps) of the last 100 training episodes"
        )
        self.episodes = counter("episodes", "Training episodes finished")
        self.eval_mean = gauge("eval_return_mean", "Mean return of the latest evaluation")
        self.eval_max = gauge("eval_return_max", "Max return of the latest evaluation")
        self.firing_rate = gauge(
            "firing_rate", "Spikes per neuron per step of a LIF layer", ("layer",)
        )
        self.silent_layers = gauge(
            "silent_layers",
            "LIF layers flagged as never firing (or always firing) for silent_layer_patience "
            "updates after learning starts: above 0, the spiking network is not learning",
        )
        self.spikes = gauge(
            "spikes_per_inference", "Spikes one inference emits over all layers and T"
        )
        self.energy = gauge(
            "energy_per_inference_joules", "Estimated energy of one inference (MACs + ACs)"
        )
        self.twin_energy = gauge(
            "dqn_twin_energy_per_inference_joules",
            "Energy of the same-shaped ReLU DQN (all MACs)",
        )
        self.env_steps = counter("env_steps", "Agent steps sampled by all env runners")
        self.env_frames = counter("env_frames", "Emulator frames (agent steps x frame skip)")
        self.env_rate = gauge("env_steps_per_second", "Agent steps per second, all runners")
        self.runner_steps = counter(
            "runner_env_steps", "Agent steps sampled by one env runner", ("runner",)
        )
        self.updates = counter("learner_updates", "Gradient updates of the learner")
        self.update_rate = gauge(
            "learner_updates_per_second", "Learner gradient updates per second"
        )
        self.sample_rate = gauge(
            "learner_samples_per_second", "Replay samples trained on per second"
        )
        self.weight_sync = gauge(
            "weight_sync_seconds", "Time of the last weight publication to the runners"
        )
        self.replay_size = gauge("replay_size", "Transitions in the replay memory")
        self.replay_occupancy = gauge("replay_occupancy_ratio", "Replay size / capacity")
        self.td_loss = gauge("td_loss", "TD loss of the last update")
        self.q_mean = gauge("q_mean", "Mean Q of the taken actions in the last batch")
        self.q_max = gauge("q_max", "Max Q of the taken actions in the last batch")
        self.epsilon = gauge("epsilon", "Exploration rate of the env runners")
        self.target_syncs = counter("target_syncs", "Target-network syncs")
        self.nonfinite_skips = counter(
            "nonfinite_grad_skips", "Learner updates skipped: a gradient held an inf or NaN"
        )
        self.restarts = counter("runner_restarts", "Env-runner actors restarted after a failure")
        self.healthy_runners = gauge(
            "env_runners_healthy",
            "Env runners alive now (the learner's own runner counts when it is the only one)",
        )
        # A timestamp, not an age (Prometheus practice: the age is time() - it, and a stalled
        # exporter cannot make a run look freshly checkpointed).
        self.last_checkpoint = gauge(
            "last_checkpoint_timestamp_seconds",
            "Unix time of the last full checkpoint (the run's start until the first one)",
        )
        self._last: dict[str, float] = {}
        self._last_checkpoint = time.time()
        for run_counter in (
            self.episodes, self.env_steps, self.env_frames, self.updates, self.target_syncs,
            self.nonfinite_skips, self.restarts,
        ):  # fmt: skip
            run_counter.labels(**self.labels)  # a child starts at 0 and is exported from now on
        self.registry.register(self.scrapes.closing)  # after every series

    def final_scrape_wait_s(self, timeout_s: float) -> float:
        """How long ``wait_for_scrape`` may wait: ``timeout_s`` or twice the longest recent
        gap between scrapes, whichever is shorter; 0 unless a scraper is still at work (two
        scrapes or more, the last within twice that gap): a single manual ``curl``, or a
        Prometheus that stopped scraping, must not hold the end of the run."""
        if self.scrapes.count < 2 or timeout_s <= 0:
            return 0.0
        gap = self.scrapes.longest_recent_gap()
        since_last = self.scrapes.seconds_since_last()
        if gap is None or since_last is None or since_last > 2 * gap:
            return 0.0
        return min(timeout_s, 2 * gap)

    def wait_for_scrape(
        self, timeout_s: float, values_set_at: float | None = None, *, found_late: bool = False
    ) -> bool:
        """Keep serving until a scrape that began after the current values were set (at
        ``values_set_at``, ``time.monotonic()``; default now) has read them, at most
        ``final_scrape_wait_s(timeout_s)``; True when one has. ``found_late``: an endpoint
        its Prometheus may not have discovered yet (a sweep trial's target file) waits the
        whole ``timeout_s`` until a scraper is seen at work."""
        since = time.monotonic() if values_set_at is None else values_set_at
        wait_s = self.final_scrape_wait_s(timeout_s)
        if found_late and self.scrapes.count < 2:
            wait_s = timeout_s
        return wait_s > 0 and self.scrapes.wait_for_read_since(since, wait_s)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def checkpoint_written(self) -> None:
        self._last_checkpoint = time.time()

    def _advance(self, counter: Counter, key: str, total: float, **extra: str) -> None:
        """Counters only go up: add what ``total`` gained since the last report."""
        delta = float(total) - self._last.get(key, 0.0)
        if delta > 0:
            counter.labels(**self.labels, **extra).inc(delta)
        self._last[key] = max(self._last.get(key, 0.0), float(total))

    def _set(self, gauge: Gauge, value: Any, **extra: str) -> None:
        if value is None:
            return
        value = float(value)
        if math.isfinite(value):
            gauge.labels(**self.labels, **extra).set(value)

    def record(
        self,
        report: Mapping[str, Any],
        *,
        frame_skip: int,
        energy_pj: float | None = None,
        twin_energy_pj: float | None = None,
    ) -> None:
        """Update every series from one iteration's pipeline report."""
        self._advance(self.env_steps, "env_steps", report.get("env_steps", 0))
        self._advance(self.env_frames, "env_frames", report.get("env_steps", 0) * frame_skip)
        self._advance(self.updates, "updates", report.get("updates", 0))
        self._advance(self.episodes, "episodes", report.get("episodes", 0))
        self._advance(self.target_syncs, "target_syncs", report.get("target_syncs", 0))
        self._advance(
            self.nonfinite_skips, "nonfinite_grad_skips", report.get("nonfinite_grad_skips", 0)
        )
        self._advance(self.restarts, "restarts", report.get("runner_restarts", 0))
        for runner, steps in report.get("steps_per_runner", {}).items():
            self._advance(self.runner_steps, f"runner{runner}", steps, runner=str(runner))
        self._set(self.env_rate, report.get("env_steps_per_s"))
        self._set(self.update_rate, report.get("updates_per_s"))
        self._set(self.sample_rate, report.get("samples_per_s"))
        self._set(self.episode_return, report.get("episode_return_mean"))
        self._set(self.episode_length, report.get("episode_length_mean"))
        self._set(self.weight_sync, report.get("weight_sync_seconds"))
        self._set(self.replay_size, report.get("replay_size"))
        capacity = report.get("replay_capacity") or 0
        if capacity:
            self._set(self.replay_occupancy, report.get("replay_size", 0) / capacity)
        self._set(self.td_loss, report.get("td_loss"))
        self._set(self.q_mean, report.get("q_mean"))
        self._set(self.q_max, report.get("q_max"))
        self._set(self.epsilon, report.get("epsilon"))
        self._set(self.healthy_runners, report.get("healthy_runners"))
        for layer, rate in report.get("firing_rates", {}).items():
            self._set(self.firing_rate, rate, layer=layer)
        if report.get("firing_rates"):
            self._set(self.spikes, report.get("spikes_per_inference"))
        self._set(self.silent_layers, len(report.get("silent_layers", ())))
        # Prometheus wants base units: joules (values are ~1e-5 J per Atari inference).
        self._set(self.energy, None if energy_pj is None else energy_pj * 1e-12)
        self._set(self.twin_energy, None if twin_energy_pj is None else twin_energy_pj * 1e-12)
        self._set(self.last_checkpoint, self._last_checkpoint)

    def record_evaluation(self, mean: float, maximum: float) -> None:
        self._set(self.eval_mean, mean)
        self._set(self.eval_max, maximum)


# Where sweep trials announce their endpoints for Prometheus's file-based service discovery
# (dashboards/prometheus.yml reads *.json here, as it reads Ray's own discovery file).
SCRAPE_TARGETS_DIR = "/tmp/dsqn/prometheus_targets"


def scrape_targets_dir() -> Path:
    """``$DSQN_PROMETHEUS_TARGETS_DIR``, else ``/tmp/dsqn/prometheus_targets``."""
    return Path(os.environ.get("DSQN_PROMETHEUS_TARGETS_DIR") or SCRAPE_TARGETS_DIR)


class ScrapeTarget:
    """A file_sd entry ``<dir>/<run_id>.json`` naming one endpoint: written atomically when a
    trial starts serving (its port is any free one), removed when it stops. A node's own
    Prometheus finds every trial that runs there, however many share the node."""

    def __init__(self, run_id: str, host: str, port: int, directory: Path | None = None) -> None:
        if host in ("0.0.0.0", "::", ""):  # reachable on every interface: name the node's
            import socket

            host = socket.gethostbyname(socket.gethostname())
        directory = directory or scrape_targets_dir()
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{run_id}.json"
        staging = self.path.with_suffix(".json.tmp")  # Prometheus must never read half a file
        staging.write_text(json.dumps([{"targets": [f"{host}:{port}"], "labels": {}}]))
        os.replace(staging, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
