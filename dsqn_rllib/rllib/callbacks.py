"""``RunObserver``: the run's side effects as an ``RLlibCallback``, so a ``PipelinedDQN`` under
``tune.Tuner`` (or a user's own loop) has them without our driver, and ``dsqn train``
(``dsqn_rllib.run.Trainer``, either API stack) has the very same ones:

* the silent-network guard (``dsqn_rllib.snn.spike_health``): each iteration's firing rates; a
  layer at rate 0 (or 1) for ``silent_layer_patience`` updates is flagged in one line (log),
  in ``result["dsqn"]["silent_layers"]``, in the registry's warning and in Prometheus;
* energy per inference (and the DQN twin's) in ``result["dsqn"]``;
* the run registry (``DSQNConfig.observability(registry=True)``): a record when the algorithm
  starts (run id: ``run_id_of``), a heartbeat with progress per iteration,
  each paper-protocol evaluation, ``finished`` when the algorithm stops;
* TensorBoard under Tune: the report as scalars at env steps in ``<trial dir>/dsqn``
  (``dsqn_rllib.ops.tensorboard``), beside Tune's own per-iteration events;
* Prometheus (``observability(metrics_port=0)``): the run's series on 127.0.0.1 (any free
  port with 0: one endpoint per trial), labelled run_id, game, model, readout, sweep, seed; a
  sweep's trial also writes a file_sd entry for it (``ops.metrics.ScrapeTarget``), removed at
  its end, so the node's Prometheus scrapes every trial without being told its port.

The observer reads its settings (``ObserverSettings``) from a ``DSQNConfig``; a driver that
keeps the registry itself, or the old API stack (a plain ``DQNConfig``), passes them instead:
``config.callbacks(partial(RunObserver, settings))``. A registry or exporter that fails never
stops training: one logged line, training goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.rllib.callbacks.callbacks import RLlibCallback

from dsqn_rllib.ops.recorder import RunRecorder
from dsqn_rllib.ops.registry import (
    RegistryConfig,
    RegistryError,
    RunRecord,
    RunRegistry,
    RunStatus,
    open_registry,
    reconcile_evaluations,
    this_host,
)
from dsqn_rllib.ops.tensorboard import TensorBoardSink
from dsqn_rllib.snn.energy import energy_report
from dsqn_rllib.snn.networks import ModelKind, build_q_network
from dsqn_rllib.snn.spike_health import SilentLayerGuard

logger = logging.getLogger("dsqn_rllib")


@dataclass(frozen=True)
class ObserverSettings:
    """What ``RunObserver`` watches and where it reports (``from_config`` for a DSQNConfig)."""

    model_kind: ModelKind
    net_options: dict[str, Any]
    """``build_q_network`` options: the energy model is built from them."""
    env_label: str
    """The game (or Gymnasium id) as labels and records show it."""
    frame_skip: int = 1
    """Emulator frames per env step (4 on Atari): Prometheus counts frames too."""
    silent_layer_patience: int = 5_000
    run_id: str | None = None
    """The run's id (with Tune: ``<run_id>-<trial id>``); None: Tune's trial id."""
    sweep: str | None = None
    seed: int = 0
    registry: bool = False
    """Record the run in the run registry (off where the driver keeps it itself)."""
    registry_url: str | None = None
    registry_prefix: str = "dsqn"
    run_root: str = "runs"
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    record_config: dict[str, Any] = field(default_factory=dict)
    """The options shown with the run's registry record."""

    @classmethod
    def for_driver(cls, cfg: Any) -> ObserverSettings:
        """A ``dsqn train`` driver's: those of ``cfg`` without the registry (the driver keeps
        the run's record itself: attempts, resume, the final status)."""
        return dataclasses.replace(cls.from_config(cfg), registry=False)

    @classmethod
    def from_config(cls, cfg: Any) -> ObserverSettings:
        """The settings a ``DSQNConfig`` holds (``observability()``, ``pipeline()``)."""
        return cls(
            model_kind=cfg.model_kind,
            net_options=cfg.net_options(),
            env_label=cfg.game or str(cfg.env),
            frame_skip=4 if cfg.is_atari else 1,
            silent_layer_patience=cfg.silent_layer_patience,
            run_id=cfg.run_id,
            sweep=cfg.sweep,
            seed=cfg.seed or 0,
            registry=cfg.registry,
            registry_url=cfg.registry_url,
            registry_prefix=cfg.registry_prefix,
            run_root=cfg.run_root,
            metrics_port=cfg.metrics_port,
            metrics_host=cfg.metrics_host,
            record_config=_plain(
                {
                    "sweep": cfg.sweep,
                    "network": cfg.network,
                    "lr": cfg.lr,
                    "gamma": cfg.gamma,
                    "train_batch_size": cfg.train_batch_size,
                    "seed": cfg.seed,
                }
            ),
        )


TRIAL_FINAL_SCRAPE_S = 15.0
"""Longest hold of a sweep trial's endpoint at its end: file_sd's 5 s and two 5 s scrapes."""


class RunObserver(RLlibCallback):
    """Guard, energy, registry and metrics of one algorithm (see the module doc)."""

    def __init__(self, settings: ObserverSettings | None = None) -> None:
        super().__init__()
        self.settings = settings
        """None: read from the algorithm's DSQNConfig when it starts."""
        self.say: Callable[[str], None] = lambda line: logger.warning("%s", line)
        """Where the observer's lines go (a driver sets its console)."""
        self.run_id = ""
        self.guard: SilentLayerGuard | None = None
        self.recorder: RunRecorder | None = None
        """The run's registry writes (``ops.recorder``: backoff, catch-up, outbox)."""
        self.record: RunRecord | None = None
        self.evaluations: list[dict[str, Any]] = []
        self.exporter: Any = None
        self.scrape_target: Any = None
        self.tensorboard: TensorBoardSink | None = None
        self._energy_net: Any = None
        self.restored_at: int | None = None
        """Env steps of the checkpoint a Tune trial was restored from (None: a fresh start)."""
        self.attempt = 0
        """0 for a fresh start, +1 with each restore (as ``dsqn train --resume`` counts)."""

    # --- RLlibCallback hooks --------------------------------------------------------------

    def on_algorithm_init(self, *, algorithm: Any, **kwargs: Any) -> None:
        if self.settings is None:
            self.settings = ObserverSettings.from_config(algorithm.config)
        settings = self.settings
        self.guard = SilentLayerGuard(settings.silent_layer_patience)
        spec = algorithm.q_network_spec()  # PipelinedDQN's, OldStackDQN's
        self._energy_net = build_q_network(
            settings.model_kind, spec.obs_shape, spec.num_actions, **settings.net_options
        )

    def start(self, algorithm: Any) -> None:
        """Registry record and metrics endpoint: on the first iteration (Tune gives a trial
        its id only after the algorithm's setup), or earlier by a driver that knows the id."""
        if self.run_id or self.settings is None:
            return
        settings = self.settings
        self.run_id = run_id_of(algorithm, settings)
        if settings.registry:
            self._open_registry(algorithm)
        if settings.metrics_port is not None:
            from dsqn_rllib.ops.metrics import PrometheusExporter

            labels = {
                "run_id": self.run_id,
                "game": settings.env_label,
                "model": settings.model_kind.value,
                "readout": settings.net_options["readout"].value
                if self._energy_net.is_spiking
                else "none",
                "sweep": settings.sweep or "",
                "seed": str(settings.seed),
            }
            self.exporter = PrometheusExporter(labels, settings.metrics_port, settings.metrics_host)
            self.say(
                f"[{self.run_id}] metrics at "
                f"http://{self.exporter.host}:{self.exporter.port}/metrics"
            )
            if settings.sweep:  # trials serve on any free port: Prometheus finds them by file
                from dsqn_rllib.ops.metrics import ScrapeTarget

                self.scrape_target = ScrapeTarget(
                    self.run_id, self.exporter.host, self.exporter.port
                )
        logdir = tensorboard_dir(algorithm)
        if logdir is not None:
            # A restored trial's later events replace those past its checkpoint.
            self.tensorboard = TensorBoardSink(logdir, purge_step=self.restored_at)

    def on_train_result(self, *, algorithm: Any, result: dict, **kwargs: Any) -> None:
        report = result.get("dsqn")
        if report is None or self.guard is None or self.settings is None:
            return
        self.start(algorithm)
        for line in self.guard.observe(int(report["updates"]), report.get("firing_rates") or {}):
            self.say(f"[{self.run_id}] warning: {line}")
        if report.get("note"):  # e.g. an evaluation that waits for the running one
            self.say(f"[{self.run_id}] {report['note']}")
        report["silent_layers"] = sorted(self.guard.dead_layers)
        report["warning"] = self.guard.warning
        rates = report.get("firing_rates") or {}
        energy_pj = twin_pj = None
        if rates or not self._energy_net.is_spiking:  # a DSQN's energy needs measured rates
            energy = energy_report(self._energy_net, rates or None)
            energy_pj, twin_pj = energy.energy_pj, energy.ann_energy_pj
        report["energy_pj_per_inference"] = energy_pj
        report["dqn_twin_energy_pj_per_inference"] = twin_pj
        if self.tensorboard is not None:
            self.tensorboard.write(report)
        if self.exporter is not None:
            self.exporter.record(
                report,
                frame_skip=self.settings.frame_skip,
                energy_pj=energy_pj,
                twin_energy_pj=twin_pj,
            )
            evaluation = result.get("evaluation", {}).get("env_runners", {})
            if "episode_return_mean" in evaluation:
                self.record_evaluation(
                    evaluation["episode_return_mean"], evaluation["episode_return_max"]
                )
        if self.recorder is not None and self.record is not None:
            progress = {k: int(report[k]) for k in ("env_steps", "updates", "episodes")}
            self.record = dataclasses.replace(self.record, heartbeat_at=time.time(), **progress)
            self.recorder.heartbeat(**progress, total_steps=0, warning=self.guard.warning)

    def record_evaluation(self, mean: float, best: float) -> None:
        """An evaluation's mean and max return to Prometheus (a driver's own evaluations too)."""
        if self.exporter is not None:
            self.exporter.record_evaluation(mean, best)

    def on_evaluate_end(self, *, algorithm: Any, evaluation_metrics: dict, **kwargs: Any) -> None:
        result = evaluation_metrics.get("env_runners", {})
        if "episode_returns" not in result or self.settings is None:
            return
        self.start(algorithm)
        record = {
            "env_steps": int(result["env_steps_at_evaluation"]),
            "attempt": self.attempt,
            "time": time.time(),
            "game": self.settings.env_label,
            "seed": self.settings.seed,
            "eval_seed": result["eval_seed"],
            "eval_epsilon": result["eval_epsilon"],
            "episodes": len(result["episode_returns"]),
            "mean": result["episode_return_mean"],
            "std": result["episode_return_std"],
            "max": result["episode_return_max"],
            "min": result["episode_return_min"],
            "returns": list(result["episode_returns"]),
        }
        if self.recorder is not None:
            self.evaluations.append(record)
            self.recorder.evaluation(record)
        if self.tensorboard is not None:
            self.tensorboard.write_evaluation(record["env_steps"], record["mean"], record["max"])

    def on_checkpoint_loaded(self, *, algorithm: Any, **kwargs: Any) -> None:
        # A restored algorithm continues its counters: the guard watches it afresh.
        if self.guard is not None and self.settings is not None:
            self.guard = SilentLayerGuard(self.settings.silent_layer_patience)
        stats = getattr(algorithm, "stats", None)
        if stats is not None:  # (a driver that resumes keeps its registry and events itself)
            self.restored_at = int(stats.env_steps)

    # --- the registry ---------------------------------------------------------------------

    def _open_registry(self, algorithm: Any) -> None:
        settings = self.settings
        assert settings is not None
        try:
            registry = open_registry(
                RegistryConfig.resolve(
                    settings.registry_url, settings.registry_prefix, run_root=settings.run_root
                )
            )
        except (RegistryError, ValueError) as err:
            self.say(f"[{self.run_id}] run registry unavailable ({err}); training goes on")
            return
        logdir = getattr(algorithm, "logdir", "") or ""
        now = time.time()
        self.record = RunRecord(
            run_id=self.run_id,
            run_dir=str(logdir),
            env=settings.env_label,
            model=settings.model_kind.value,
            config=settings.record_config,
            started_at=now,
            heartbeat_at=now,
            host=this_host(),
            pid=os.getpid(),
        )
        self.recorder = RunRecorder(
            registry, lambda: self.record, lambda: self.evaluations, self.say
        )
        if self.restored_at is not None:  # Tune restored the trial after a lost driver
            self.recorder.write(self._reconcile_restored)
        self.recorder.start()

    def _reconcile_restored(self, registry: RunRegistry) -> None:
        """The restored trial is the next attempt of its run; evaluations the lost attempt made
        past the checkpoint are marked superseded (weights this attempt never had)."""
        assert self.restored_at is not None and self.record is not None
        previous = registry.get_run(self.record.run_id)
        self.attempt = self.record.attempt = (previous.attempt + 1) if previous else 1
        if previous is not None:
            self.record.started_at = previous.started_at
        self.evaluations, _ = reconcile_evaluations(
            registry.evaluations(self.record.run_id), self.restored_at, self.attempt
        )

    def on_algorithm_stop(self, *, algorithm: Any, **kwargs: Any) -> None:
        """Called by ``PipelinedDQN.cleanup`` (RLlibCallback has no stop hook)."""
        if self.recorder is not None:
            kept = self.recorder.finish(RunStatus.FINISHED)
            if kept is not None:
                self.say(
                    f"[{self.run_id}] the run registry is unreachable: the record waits in {kept}"
                )
        if self.scrape_target is not None and self.exporter is not None:
            # A trial found by file may end before its Prometheus has scraped it once (file_sd
            # passes new targets on every 5 s): its endpoint stays for one scrape of the final
            # values, at most TRIAL_FINAL_SCRAPE_S (less while a scraper is seen at work).
            self.exporter.wait_for_scrape(TRIAL_FINAL_SCRAPE_S, found_late=True)
        self.close_metrics()
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None

    def hold_for_final_scrape(self, timeout_s: float) -> None:
        """At the end of a run whose endpoint something scrapes, keep it up until a scrape has
        read the final values: at most ``timeout_s``, or twice the longest recent gap between
        scrapes (``PrometheusExporter.final_scrape_wait_s``; 0 when nothing scrapes). A Ctrl-C
        only cuts the wait short: the run is done and saved."""
        if self.exporter is None:
            return
        values_set_at = time.monotonic()
        wait_s = self.exporter.final_scrape_wait_s(timeout_s)
        if wait_s <= 0:
            return
        self.say(f"[{self.run_id}] metrics: waiting for a last scrape (at most {wait_s:.1f} s)")
        with contextlib.suppress(KeyboardInterrupt):
            self.exporter.wait_for_scrape(timeout_s, values_set_at)

    def close_metrics(self) -> None:
        if self.scrape_target is not None:
            self.scrape_target.remove()
            self.scrape_target = None
        if self.exporter is not None:
            self.exporter.close()
            self.exporter = None


def observer_of(algorithm: Any) -> RunObserver | None:
    """The ``RunObserver`` among an algorithm's callbacks, if it has one."""
    callbacks = algorithm.callbacks
    for callback in callbacks if isinstance(callbacks, list) else [callbacks]:
        if isinstance(callback, RunObserver):
            return callback
    return None


def run_id_of(algorithm: Any, settings: ObserverSettings | None = None) -> str:
    """``run_id`` (or the sweep's name) and Tune's trial id as ``<name>-<trial id>``; the name
    alone outside Tune, or one made up (``<model>-<env>-<time>``)."""
    settings = settings or ObserverSettings.from_config(algorithm.config)
    trial_id = tune_trial_id(algorithm)
    name = settings.run_id or settings.sweep
    if name and trial_id:
        return f"{name}-{trial_id}"
    env = settings.env_label.lower().replace("/", "_")
    made_up = f"{settings.model_kind.value}-{env}-{time.strftime('%Y%m%d-%H%M%S')}"
    return name or trial_id or made_up


def tune_trial_id(algorithm: Any) -> str | None:
    """The id of the Tune trial running ``algorithm`` (``a1b2c_00003``), else None. Ray 2.60's
    Tune hands a class trainable no trial info; its working directory carries the trial name
    (``<Trainable>_<env>_<id>_<index>_...``)."""
    trial_id = getattr(algorithm, "trial_id", None)
    if trial_id and trial_id != "default":  # Trainable's id outside Tune
        return str(trial_id)
    logdir = str(getattr(algorithm, "logdir", "") or "")
    if "working_dirs" not in logdir:
        return None
    found = _TRIAL_ID.search(os.path.basename(logdir.rstrip("/")))
    return found.group(1) if found else None


def tensorboard_dir(algorithm: Any) -> Path | None:
    """Under Tune: ``<trial dir>/dsqn``, beside Tune's own events in a folder of its own
    (TensorBoard reads one writer per folder). None outside Tune (``dsqn train`` writes into
    its run directory). ``algorithm.logdir`` is Tune's working folder under /tmp/ray, which
    Ray 2.60 does not copy to the storage folder by default: the trial's storage path is read
    from the Trainable's (private) storage context instead."""
    storage = getattr(algorithm, "_storage", None)
    if storage is None or tune_trial_id(algorithm) is None:
        return None
    import pyarrow.fs

    if isinstance(storage.storage_filesystem, pyarrow.fs.LocalFileSystem):
        return Path(storage.trial_fs_path) / "dsqn"
    return Path(algorithm.logdir) / "dsqn"  # remote storage: SyncConfig(sync_artifacts=True)


_TRIAL_ID = re.compile(r"_([0-9a-f]{5}_\d{5})_")


def _plain(value: Any) -> Any:
    """JSON-friendly: enums as values, tuples as lists, non-finite floats as None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "value") and not isinstance(value, (int, float, str)):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
