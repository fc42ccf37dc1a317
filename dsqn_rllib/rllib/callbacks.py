"""``RunObserver``: the run's side effects as an ``RLlibCallback``, so a ``PipelinedDQN`` under
``tune.Tuner`` (or a user's own loop) has them without our driver:

* the silent-network guard (``dsqn_rllib.snn.spike_health``): each iteration's firing rates; a
  layer at rate 0 (or 1) for ``silent_layer_patience`` updates is flagged in one line (log),
  in ``result["dsqn"]["silent_layers"]``, in the registry's warning and in Prometheus;
* energy per inference (and the DQN twin's) in ``result["dsqn"]``;
* the run registry (``DSQNConfig.observability(registry=True)``): a record when the algorithm
  starts (run id: ``run_id_of``), a heartbeat with progress per iteration,
  each paper-protocol evaluation, ``finished`` when the algorithm stops;
* Prometheus (``observability(metrics_port=0)``): the run's series on 127.0.0.1 (any free
  port with 0: one endpoint per trial), labelled run_id, game, model, readout, plus ``sweep``.

A registry or exporter that fails never stops training: one logged line, training goes on.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from typing import Any

from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.core import DEFAULT_MODULE_ID

from dsqn_rllib.ops.registry import (
    RegistryConfig,
    RegistryError,
    RunRecord,
    RunRegistry,
    RunStatus,
    open_registry,
    this_host,
)
from dsqn_rllib.snn.energy import energy_report
from dsqn_rllib.snn.networks import build_q_network
from dsqn_rllib.snn.spike_health import SilentLayerGuard

logger = logging.getLogger("dsqn_rllib")


class RunObserver(RLlibCallback):
    """Guard, energy, registry and metrics of one ``PipelinedDQN`` (see the module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self.run_id = ""
        self.guard: SilentLayerGuard | None = None
        self.registry: RunRegistry | None = None
        self.exporter: Any = None
        self._energy_net: Any = None

    # --- RLlibCallback hooks --------------------------------------------------------------

    def on_algorithm_init(self, *, algorithm: Any, **kwargs: Any) -> None:
        cfg = algorithm.config
        self.guard = SilentLayerGuard(cfg.silent_layer_patience)
        obs_space, act_space = algorithm.spaces[DEFAULT_MODULE_ID]
        self._energy_net = build_q_network(
            cfg.model_kind, tuple(obs_space.shape), int(act_space.n), **cfg.net_options()
        )

    def _ensure_started(self, algorithm: Any) -> None:
        """Registry record and metrics endpoint, on the first iteration: Tune gives a trial
        its id only after the algorithm's setup."""
        if self.run_id:
            return
        cfg = algorithm.config
        self.run_id = run_id_of(algorithm)
        if cfg.registry:
            self._open_registry(algorithm)
        if cfg.metrics_port is not None:
            from dsqn_rllib.ops.metrics import PrometheusExporter

            labels = {
                "run_id": self.run_id,
                "game": cfg.game or str(cfg.env),
                "model": cfg.model_kind.value,
                "readout": cfg.spiking.readout.value if self._energy_net.is_spiking else "none",
            }
            self.exporter = PrometheusExporter(labels, cfg.metrics_port, cfg.metrics_host)
            logger.warning(
                "[%s] metrics at http://%s:%s/metrics",
                self.run_id,
                self.exporter.host,
                self.exporter.port,
            )

    def on_train_result(self, *, algorithm: Any, result: dict, **kwargs: Any) -> None:
        report = result.get("dsqn")
        if report is None or self.guard is None:
            return
        self._ensure_started(algorithm)
        for line in self.guard.observe(int(report["updates"]), report.get("firing_rates") or {}):
            logger.warning("[%s] %s", self.run_id, line)
        report["silent_layers"] = sorted(self.guard.dead_layers)
        report["warning"] = self.guard.warning
        rates = report.get("firing_rates") or {}
        energy_pj = twin_pj = None
        if rates or not self._energy_net.is_spiking:  # a DSQN's energy needs measured rates
            energy = energy_report(self._energy_net, rates or None)
            energy_pj, twin_pj = energy.energy_pj, energy.ann_energy_pj
        report["energy_pj_per_inference"] = energy_pj
        report["dqn_twin_energy_pj_per_inference"] = twin_pj
        if self.exporter is not None:
            cfg = algorithm.config
            self.exporter.record(
                report,
                frame_skip=4 if cfg.is_atari else 1,
                energy_pj=energy_pj,
                twin_energy_pj=twin_pj,
            )
            evaluation = result.get("evaluation", {}).get("env_runners", {})
            if "episode_return_mean" in evaluation:
                self.exporter.record_evaluation(
                    evaluation["episode_return_mean"], evaluation["episode_return_max"]
                )
        self._write(
            lambda r: r.heartbeat(
                self.run_id,
                env_steps=report["env_steps"],
                updates=report["updates"],
                episodes=report["episodes"],
                total_steps=0,
                warning=self.guard.warning if self.guard else None,
            )
        )

    def on_evaluate_end(self, *, algorithm: Any, evaluation_metrics: dict, **kwargs: Any) -> None:
        result = evaluation_metrics.get("env_runners", {})
        if "episode_returns" not in result:
            return
        self._ensure_started(algorithm)
        cfg = algorithm.config
        record = {
            "env_steps": int(result["env_steps_at_evaluation"]),
            "attempt": 0,
            "time": time.time(),
            "game": cfg.game or str(cfg.env),
            "seed": cfg.seed or 0,
            "eval_seed": result["eval_seed"],
            "eval_epsilon": result["eval_epsilon"],
            "episodes": len(result["episode_returns"]),
            "mean": result["episode_return_mean"],
            "std": result["episode_return_std"],
            "max": result["episode_return_max"],
            "min": result["episode_return_min"],
            "returns": list(result["episode_returns"]),
        }
        self._write(lambda r: r.record_evaluation(self.run_id, record))

    def on_checkpoint_loaded(self, *, algorithm: Any, **kwargs: Any) -> None:
        # A restored algorithm continues its counters: the guard watches it afresh.
        if self.guard is not None:
            self.guard = SilentLayerGuard(algorithm.config.silent_layer_patience)

    # --- the registry ---------------------------------------------------------------------

    def _open_registry(self, algorithm: Any) -> None:
        cfg = algorithm.config
        try:
            self.registry = open_registry(
                RegistryConfig.resolve(cfg.registry_url, cfg.registry_prefix, run_root=cfg.run_root)
            )
        except (RegistryError, ValueError) as err:
            logger.warning("[%s] run registry unavailable (%s); training goes on", self.run_id, err)
            return
        logdir = getattr(algorithm, "logdir", "") or ""
        now = time.time()
        record = RunRecord(
            run_id=self.run_id,
            run_dir=str(logdir),
            env=cfg.game or str(cfg.env),
            model=cfg.model_kind.value,
            config=_plain(
                {
                    "sweep": cfg.sweep,
                    "network": cfg.network,
                    "lr": cfg.lr,
                    "gamma": cfg.gamma,
                    "train_batch_size": cfg.train_batch_size,
                    "seed": cfg.seed,
                }
            ),
            started_at=now,
            heartbeat_at=now,
            host=this_host(),
            pid=os.getpid(),
        )
        self._write(lambda r: r.start_run(record))

    def on_algorithm_stop(self, *, algorithm: Any, **kwargs: Any) -> None:
        """Called by ``PipelinedDQN.cleanup`` (RLlibCallback has no stop hook)."""
        if self.run_id:
            self._write(lambda r: r.finish(self.run_id, RunStatus.FINISHED))
        if self.exporter is not None:
            self.exporter.close()
            self.exporter = None

    def _write(self, write: Any) -> None:
        if self.registry is None:
            return
        try:
            write(self.registry)
        except RegistryError as err:
            logger.warning("[%s] run registry: %s; training goes on", self.run_id, err)


def run_id_of(algorithm: Any) -> str:
    """``run_id`` (or the sweep's name) and Tune's trial id as ``<name>-<trial id>``; the name
    alone outside Tune, or one made up (``<model>-<env>-<time>``)."""
    cfg = algorithm.config
    trial_id = tune_trial_id(algorithm)
    name = cfg.run_id or cfg.sweep
    if name and trial_id:
        return f"{name}-{trial_id}"
    env = cfg.game or str(cfg.env).lower().replace("/", "_")
    return name or trial_id or f"{cfg.model_kind.value}-{env}-{time.strftime('%Y%m%d-%H%M%S')}"


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
