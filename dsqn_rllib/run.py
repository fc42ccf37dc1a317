"""``dsqn train``'s driver: build the RLlib algorithm from a TrainConfig, run it, keep the run.

    trainer = Trainer(TrainConfig(game="pong"))      # or Trainer.resume("runs/<id>")
    summary = trainer.run()

What the algorithm does itself, as under ``tune.Tuner``: training (``PipelinedDQN``, or
``OldStackDQN`` on the old API stack), evaluation (``dsqn_rllib.rllib.paper_evaluation``: the
paper's protocol every ``eval_interval`` env steps, a Ray task on a frozen copy of the weights
beside training), and through its ``RunObserver`` callback (``dsqn_rllib.rllib.callbacks``) the
silent-network guard, energy and the Prometheus endpoint. What this driver adds is the run as
a person keeps it: the run directory (config, metrics.jsonl, evaluations.jsonl, TensorBoard
events), ``checkpoints/latest`` (on the new stack also an RLlib Algorithm checkpoint,
``Algorithm.from_checkpoint``; layout in ``dsqn_rllib.ops.checkpoints``) and
``checkpoints/best`` (the best-evaluated weights), resuming as the next attempt, stop signals,
the console and the registry record (written through ``dsqn_rllib.ops.recorder``, as a Tune
trial's observer writes its own).

The run registry (``dsqn_rllib.ops.registry``: Redis, or a local SQLite file) gets the run's record
when it starts, a heartbeat with progress every iteration, each checkpoint and evaluation, and
the final status. Files are written first, the registry second: after a kill -9 between the two,
resuming brings the registry up to date from the files. The latest checkpoint is the source of
truth for the step count; see ``Trainer.resume`` for what happens to evaluations made after it.

The latest checkpoint is written every ``checkpoint_interval`` env steps or
``checkpoint_every_minutes`` of wall time, whichever is due first. SIGINT or SIGTERM
(``dsqn_rllib.ops.stopping``) lets the current iteration finish, writes the latest checkpoint
and ends the run as ``stopped`` (``TrainSummary.stopped_by``); a second one aborts at once
(``RunAborted``, status ``failed``, the last good checkpoint kept). A checkpoint that cannot be
written (a full disk) ends the run as ``failed`` with a ``CheckpointError``; its staging folder
is removed and the previous checkpoint stays as it was.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray

from dsqn_rllib.config import ApiStack, TrainConfig
from dsqn_rllib.errors import ConfigError, first_line
from dsqn_rllib.ops.checkpoints import (
    ALGORITHM_DIR,
    PROGRESS_FILE,
    CheckpointSchedule,
    RunPaths,
    check_resumable,
    learner_state_dir,
    read_checkpoint,
    read_jsonl,
    write_atomically,
    write_checkpoint_files,
    write_jsonl_atomically,
)
from dsqn_rllib.ops.preflight import preflight
from dsqn_rllib.ops.progress import Eta, progress_line
from dsqn_rllib.ops.recorder import RunRecorder
from dsqn_rllib.ops.registry import (
    DEFAULT_PREFIX,
    URL_ENV,
    CheckpointKind,
    RegistryConfig,
    RunRecord,
    RunRegistry,
    RunStatus,
    merge_evaluations,
    open_registry,
    reconcile_evaluations,
    this_host,
)
from dsqn_rllib.ops.stopping import StopSignals, children_spared_sigterm
from dsqn_rllib.ops.tensorboard import TensorBoardSink
from dsqn_rllib.snn.networks import QNetwork

if TYPE_CHECKING:
    from dsqn_rllib.rllib.paper_evaluation import Evaluation

# RLlib's result key of an iteration's evaluation (ray.rllib.utils.metrics.EVALUATION_RESULTS).
EVALUATION_RESULTS = "evaluation"

# While the driver blocks on the final evaluation it still heartbeats this often, so a long
# evaluation never makes a live run look lost (RegistryConfig.stale_after_s).
HEARTBEAT_WHILE_WAITING_S = 10.0


@dataclass
class TrainSummary:
    run_id: str
    run_dir: Path
    env_steps: int
    updates: int
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    best_eval_return: float = float("-inf")
    seconds: float = 0.0
    stopped_by: int | None = None
    """The signal (SIGINT, SIGTERM) that stopped the run before it was done; None: finished."""
    checkpoint: Path | None = None
    """The latest checkpoint (what ``dsqn train --resume`` continues from)."""

    @property
    def exit_code(self) -> int:
        """0 when finished, 128 + the signal when stopped (130 for SIGINT, 143 for SIGTERM)."""
        return 0 if self.stopped_by is None else 128 + self.stopped_by


def ensure_ray(num_env_runners: int) -> None:
    """Join the cluster given by RAY_ADDRESS, else start a local Ray (dashboard off, 127.0.0.1)."""
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=True)
        return
    # Logical CPUs: one per runner, one for the evaluation task, the rest for the learner.
    cpus = max(os.cpu_count() or 1, num_env_runners + 2)
    # address="local": a fresh Ray of our own, even where `ray start` left a cluster on this
    # machine (plain ray.init() would join it); joining one is what RAY_ADDRESS is for.
    with children_spared_sigterm():  # a process-group SIGTERM is the driver's to handle
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=True)


class Trainer:
    """Runs one training job to ``total_steps`` env steps (resumable)."""

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        run_dir: Path | None = None,
        resume_from: Path | None = None,
        resume_progress: dict | None = None,
        registry: RunRegistry | None = None,
        out: Callable[[str], None] | None = None,
        checked: bool = False,
    ) -> None:
        self.cfg = cfg.validate()
        # The machine's checks (memory, learner device, metrics port) before any file, registry
        # write or Ray actor: a run this machine cannot hold is one line, nothing written.
        # ``checked``: the caller (the CLI) has just made them.
        if not checked:
            preflight(self.cfg)
        self.out = out or (lambda line: print(line, flush=True))
        if self.cfg.run_id is None:
            name = self.cfg.game or str(self.cfg.env).lower().replace("/", "_")
            self.cfg.run_id = f"{self.cfg.model.value}-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.paths = RunPaths(run_dir or Path(self.cfg.run_dir) / self.cfg.run_id)
        # Opened before Ray starts: an unreachable registry is one line and no actor runs.
        self.registry = registry or open_registry(
            RegistryConfig.resolve(
                self.cfg.registry_url, self.cfg.registry_prefix, run_root=self.paths.root.parent
            )
        )
        # The config records where the run's record lives (a URL never holds a password).
        self.cfg.registry_url = self.registry.config.url
        self.cfg.registry_prefix = self.registry.config.prefix
        # Registry writes never stop training; missed ones are caught up (ops.recorder).
        self.recorder = RunRecorder(
            self.registry, self._run_record, lambda: self._all_evaluations, self.out
        )
        self.resume_from = resume_from
        self.progress: dict[str, Any] = dict(resume_progress or {})
        self.evaluations: list[dict[str, Any]] = list(self.progress.get("evaluations", []))
        self.best_return = max((e["mean"] for e in self.evaluations), default=-math.inf)
        # Every evaluation of the run, superseded ones included (what evaluations.jsonl holds).
        self._all_evaluations: list[dict[str, Any]] = merge_evaluations(self.evaluations)
        self._latest_checkpoint: tuple[str, int] | None = None
        self._best_checkpoint: tuple[str, int] | None = None
        self.attempt = 0
        if resume_from is not None:
            self._prepare_resume(resume_from)
        self.progress["attempt"] = self.attempt
        self.progress.setdefault("started_at", time.time())
        self.observer: Any = None  # the algorithm's RunObserver, once built
        self.tensorboard: TensorBoardSink | None = None
        self._guard_warning: str | None = None
        self.checkpoints = CheckpointSchedule(
            self.cfg.checkpoint_interval, self.cfg.checkpoint_every_minutes, self.env_steps
        )
        self.stop = StopSignals(prefix=f"[{self.cfg.run_id}] ")
        self.eta = Eta(
            self.cfg.total_steps,
            self.cfg.learning_starts,
            start_steps=self.env_steps,
            steps_per_update=self.cfg.train_every,
        )

    @classmethod
    def resume(
        cls,
        path: str | Path,
        *,
        total_steps: int | None = None,
        registry: RunRegistry | None = None,
        out: Callable[[str], None] | None = None,
        checked: bool = False,
    ) -> Trainer:
        """Continue the run whose checkpoint (or run directory) is ``path``.

        The checkpoint is the source of truth: steps, updates, learner state and the
        evaluations up to its step. Evaluations made after it by the process that died (kill -9
        after an evaluation, before the next checkpoint) are kept in evaluations.jsonl and the
        registry, marked ``superseded`` (weights the resumed run never had), and leave the
        run's history; one that finished after the checkpoint but evaluated earlier weights
        stays in it. Without ``registry`` the run's own (its config, $DSQN_REDIS_URL, or the
        local store next to the run directory) is opened.
        """
        ckpt, cfg, progress = read_checkpoint(path)
        if not checked:  # the learner's files too: a damaged one before Ray starts
            check_resumable(ckpt, cfg)
        if total_steps is not None:
            cfg.total_steps = total_steps
        run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
        return cls(
            cfg,
            run_dir=run_dir,
            resume_from=ckpt,
            resume_progress=progress,
            registry=registry,
            out=out,
            checked=checked,
        )

    def _prepare_resume(self, ckpt: Path) -> None:
        """Attempt number, evaluation history and best return from the files and the registry."""
        run_id = self.cfg.run_id or ""
        logged = read_jsonl(self.paths.evaluations)
        recorded = self.registry.evaluations(run_id)
        record = self.registry.get_run(run_id)
        attempts = [int(self.progress.get("attempt", 0))]
        attempts += [int(e.get("attempt", 0)) for e in (*logged, *recorded)]
        if record is not None:
            now, stale_after_s = time.time(), self.registry.config.stale_after_s
            if record.status_at(now, stale_after_s) is RunStatus.RUNNING:
                # Two processes training one run directory would overwrite each other's files.
                raise ConfigError(
                    f"run {run_id!r} is still running (pid {record.pid} on {record.host}, "
                    f"heartbeat {now - record.heartbeat_at:.0f} s ago); resume it once it has "
                    f"stopped or shows as lost in `dsqn runs`"
                )
            attempts.append(record.attempt)
            if "started_at" not in self.progress and record.started_at:
                self.progress["started_at"] = record.started_at
        self.attempt = max(attempts) + 1  # unique even when an attempt died before a checkpoint
        self._all_evaluations, self.evaluations = reconcile_evaluations(
            merge_evaluations(self.evaluations, logged, recorded), self.env_steps, self.attempt
        )
        self.progress["evaluations"] = self.evaluations
        self._latest_checkpoint = (str(ckpt.resolve()), self.env_steps)
        best_file = self.paths.best / PROGRESS_FILE
        best_on_disk = -math.inf
        if best_file.is_file():
            best = json.loads(best_file.read_text())
            self._best_checkpoint = (str(self.paths.best.resolve()), int(best["env_steps"]))
            if best.get("best_eval_return") is not None:
                best_on_disk = float(best["best_eval_return"])
        # checkpoints/best may hold superseded weights that really scored higher: keep them.
        self.best_return = max([best_on_disk, *(e["mean"] for e in self.evaluations)])

    # --- main loop ---------------------------------------------------------------------------

    def run(self) -> TrainSummary:
        """Train to total_steps; the registry sees the run running, then finished, stopped (a
        signal; ``summary.stopped_by``) or failed (the error is raised again; ``RunAborted``
        after a second signal)."""
        cfg = self.cfg
        self.paths.root.mkdir(parents=True, exist_ok=True)
        (self.paths.root / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        if self.resume_from is not None:
            write_jsonl_atomically(self.paths.evaluations, self._all_evaluations)
        self.recorder.start()
        try:
            self.out(
                f"[{cfg.run_id}] run registry: {self.registry.where}"
                + (f" (prefix {self.registry.config.prefix})" if cfg.registry_url else "")
                + f", attempt {self.attempt}"
            )
            summary = self._train()
        except BaseException as err:  # Ctrl-C and SystemExit too: the run did not finish
            aborted = self.stop.aborted(err)
            self._finish(RunStatus.FAILED, "aborted" if aborted else _one_line(err))
            if aborted is None:
                raise
            kept = self._latest_checkpoint[0] if self._latest_checkpoint else "none yet"
            self.out(
                f"[{cfg.run_id}] aborted by a second {signal.Signals(aborted.signum).name}; "
                f"last good checkpoint: {kept}"
            )
            if aborted is err:
                raise
            raise aborted from None  # Ray's plain KeyboardInterrupt: the CLI exits 128 + signal
        if summary.stopped_by is None:
            self._finish(RunStatus.FINISHED)
            return summary
        self._finish(RunStatus.STOPPED)
        self.out(
            f"[{cfg.run_id}] stopped by {signal.Signals(summary.stopped_by).name} at "
            f"{summary.env_steps:,} env steps; checkpoint {summary.checkpoint}; "
            f"resume with: {self.resume_command()}"
        )
        return summary

    def _finish(self, status: RunStatus, error: str | None = None) -> None:
        """The run's final status to the registry; where it does not answer, into the outbox
        that the next ``dsqn`` command touching this registry writes (``defer_record``)."""
        kept = self.recorder.finish(status, error)
        if kept is None:
            return
        self.out(
            f"[{self.cfg.run_id}] the run registry at {self.registry.where} is unreachable: "
            f"the run's record waits in {kept} for the next dsqn command that opens it"
        )

    def resume_command(self) -> str:
        """The exact command that continues this run by its id (with the registry's flags
        where the defaults would not find it)."""
        command = ["dsqn", "train", "--resume", self.cfg.run_id or ""]
        registry = self.registry.config
        if registry.url is None:
            run_root = registry.local_path.parent
            if run_root.resolve() != Path("runs").resolve():
                command += ["--run-dir", str(run_root)]
        elif registry.url != os.environ.get(URL_ENV):
            command += ["--registry-url", registry.url]
        if registry.prefix != DEFAULT_PREFIX:
            command += ["--registry-prefix", registry.prefix]
        return shlex.join(command)

    def _train(self) -> TrainSummary:
        from dsqn_rllib.rllib.builder import build_algorithm_config
        from dsqn_rllib.rllib.callbacks import observer_of

        cfg = self.cfg
        ensure_ray(cfg.num_env_runners)
        algo = build_algorithm_config(cfg).build_algo()
        self.algo = algo
        self._spaces()
        # Guard, energy and metrics (served from now on, so scrapes see the whole run).
        self.observer = observer_of(algo)
        self.observer.say = self.out
        self.observer.start(algo)
        if self.resume_from is not None:
            self._restore(self.resume_from)
            self.out(
                f"[{cfg.run_id}] resumed from {self.resume_from} at {self.env_steps:,} env steps"
            )
        started = time.time()
        finished = False
        # Event files in the run directory: `tensorboard --logdir runs` shows one run per id.
        # A resumed run's earlier events past its checkpoint are steps it does again: purged.
        self.tensorboard = TensorBoardSink(
            self.paths.root, purge_step=self.env_steps if self.resume_from is not None else None
        )
        # Installed after ray.init and the build, which set Ray's SIGTERM handlers (see
        # dsqn_rllib.ops.stopping); Ray's come back when the run ends.
        with self.stop, self.tensorboard:
            try:
                finished = self._loop(algo)
                if finished:  # the final evaluation was set moments ago: let a scraper read it
                    self.observer.hold_for_final_scrape(cfg.metrics_final_scrape_timeout_s)
            finally:
                algo.stop()  # closes the observer's metrics endpoint
        return TrainSummary(
            cfg.run_id or "",
            self.paths.root,
            self.env_steps,
            self.updates,
            self.evaluations,
            self.best_return,
            time.time() - started,
            stopped_by=None if finished else self.stop.signum,
            checkpoint=self.paths.latest,
        )

    def _loop(self, algo: Any) -> bool:
        """Iterate until done or a stop signal, then save the latest checkpoint. True when the
        run is done (total steps or target return reached, final evaluation made)."""
        cfg = self.cfg
        while (
            self.env_steps < cfg.total_steps
            and not self._reached_stop_return()
            and not self.stop.requested
        ):
            result = algo.train()  # a signal in here only sets stop.requested
            report = self._report(result)
            self._log(report)
            if EVALUATION_RESULTS in result:  # one the algorithm ran beside training ended
                self._record_evaluation(algo.last_evaluation)
            if self.stop.requested:
                break  # the final save below is the checkpoint; no new evaluation
            if self.checkpoints.due(self.env_steps):
                self.save(self.paths.latest)
        self._await_evaluation()  # cut short by a stop signal
        if (
            not self.stop.requested
            and cfg.eval_interval > 0
            and (not self.evaluations or self.evaluations[-1]["env_steps"] < self.env_steps)
        ):
            algo.start_evaluation()  # the final weights
            self._await_evaluation()
        done = not self.stop.requested
        self.save(self.paths.latest)
        return done

    def _reached_stop_return(self) -> bool:
        target = self.cfg.stop_eval_return
        return target is not None and self.best_return >= target

    # --- algorithm access (both API stacks) ----------------------------------------------------

    @property
    def is_new_stack(self) -> bool:
        return self.cfg.api_stack is ApiStack.NEW

    def _spaces(self) -> None:
        spec = self.algo.q_network_spec()
        self.obs_shape, self.num_actions = spec.obs_shape, spec.num_actions

    @property
    def env_steps(self) -> int:
        return int(self.progress.get("env_steps", 0))

    @property
    def updates(self) -> int:
        return int(self.progress.get("updates", 0))

    def online_network(self) -> QNetwork:
        """A CPU copy of the learner's online Q-network (either stack)."""
        return self.algo.q_network_spec().build(self.algo.online_weights())

    def _report(self, result: dict) -> dict[str, Any]:
        """The iteration's progress (``result["dsqn"]`` on both stacks, with the observer's
        guard and energy), stamped with the run's id and attempt."""
        report = dict(result["dsqn"])
        report["time"] = time.time()
        report["run_id"] = self.cfg.run_id
        report["attempt"] = self.attempt
        self._guard_warning = report.get("warning")
        self.progress["env_steps"] = int(report["env_steps"])
        self.progress["updates"] = int(report.get("updates", 0))
        self.progress["episodes"] = int(report.get("episodes", 0))
        return report

    def _log(self, report: dict[str, Any]) -> None:
        self.eta.update(self.env_steps, self.updates)
        report["eta_s"] = self.eta.seconds_left()
        with self.paths.metrics.open("a") as f:
            f.write(json.dumps(report, default=float) + "\n")
        if self.tensorboard is not None:
            self.tensorboard.write(report)
        self._heartbeat()
        last_eval = self.evaluations[-1]["mean"] if self.evaluations else None
        self.out(
            f"[{self.cfg.run_id}] "
            + progress_line(
                report,
                self.cfg.total_steps,
                frame_skip=4 if self.cfg.is_atari else 1,
                last_eval=last_eval,
                best_eval=self.best_return,
                eta=self.eta.text(),
            )
        )

    # --- evaluation ------------------------------------------------------------------------

    def _await_evaluation(self) -> None:
        """Wait for the algorithm's running evaluation (heartbeats go on; a stop signal ends
        the wait) and record it."""
        while self.algo.evaluation_running and not self.stop.requested:
            self._heartbeat()
            evaluation = self.algo.poll_evaluation(timeout_s=HEARTBEAT_WHILE_WAITING_S)
            if evaluation is not None:
                self._record_evaluation(evaluation)

    def _record_evaluation(self, evaluation: Evaluation) -> None:
        """An evaluation to evaluations.jsonl, the registry, the console, Prometheus and
        TensorBoard; its weights become checkpoints/best when they scored best."""
        steps, result = evaluation.env_steps, evaluation.result
        record = {
            "env_steps": steps,
            "attempt": self.attempt,
            "time": time.time(),
            "game": self.cfg.game or self.cfg.env,
            "seed": self.cfg.seed,
            "eval_seed": evaluation.protocol.seed,
            "eval_epsilon": evaluation.protocol.epsilon,
            **result.to_dict(),
        }
        self.evaluations.append(record)
        self._all_evaluations.append(record)
        self.progress["evaluations"] = self.evaluations
        with self.paths.evaluations.open("a") as f:
            f.write(json.dumps(record) + "\n")
        self.recorder.evaluation(record)
        self.out(
            f"[{self.cfg.run_id}] evaluation at {steps:,} steps: mean {result.mean:.2f} "
            f"± {result.std:.2f}, max {result.max:.1f} over {result.num_episodes} episodes"
        )
        if self.observer is not None:
            self.observer.record_evaluation(result.mean, result.max)
        if self.tensorboard is not None:
            self.tensorboard.write_evaluation(steps, result.mean, result.max)
        if result.mean > self.best_return:
            self.best_return = result.mean
            self._save_model_only(self.paths.best, evaluation.weights, steps)

    # --- checkpoints -----------------------------------------------------------------------

    def _progress_record(self, env_steps: int | None = None) -> dict[str, Any]:
        return {
            **self.progress,
            "env_steps": self.env_steps if env_steps is None else env_steps,
            "run_id": self.cfg.run_id,
            "obs_shape": list(self.obs_shape),
            "num_actions": self.num_actions,
            "best_eval_return": self.best_return if math.isfinite(self.best_return) else None,
            "saved_at": time.time(),
        }

    def save(self, path: Path) -> Path:
        """Write a full checkpoint (learner/algorithm state included) atomically at ``path``
        (``CheckpointError`` when it cannot be: the previous one is kept, no staging left). On
        the new API stack it is also an RLlib Algorithm checkpoint (``Algorithm.from_checkpoint``;
        see ``dsqn_rllib.ops.checkpoints``); the old stack keeps RLlib's in ``algorithm/``."""

        def fill(staging: Path) -> None:
            if self.is_new_stack:  # an RLlib Algorithm checkpoint, the project's files beside
                self.progress.update(self.algo.get_pipeline_state())
                from dsqn_rllib.rllib.checkpoints import save_algorithm_checkpoint

                save_algorithm_checkpoint(self.algo, staging)
            else:
                (staging / ALGORITHM_DIR).mkdir()
                self.algo.save_checkpoint(str((staging / ALGORITHM_DIR).resolve()))
            net = self.online_network()
            write_checkpoint_files(staging, self.cfg, self._progress_record(), net)

        write_atomically(path, fill)
        self.progress["last_checkpoint_time"] = time.time()
        if path == self.paths.latest:
            self.checkpoints.saved(self.env_steps)
            self._latest_checkpoint = (str(path.resolve()), self.env_steps)
            self.recorder.checkpoint(CheckpointKind.LATEST, path.resolve(), self.env_steps)
        exporter = self.observer.exporter if self.observer is not None else None
        if exporter is not None:
            exporter.checkpoint_written()
        return path

    def _save_model_only(self, path: Path, state: dict, steps: int) -> None:
        net = self.algo.q_network_spec().build(state)
        write_atomically(
            path,
            lambda staging: write_checkpoint_files(
                staging, self.cfg, self._progress_record(steps), net
            ),
        )
        self._best_checkpoint = (str(path.resolve()), steps)
        self.recorder.checkpoint(CheckpointKind.BEST, path.resolve(), steps, self.best_return)

    def _restore(self, ckpt: Path) -> None:
        if self.is_new_stack:
            self.algo.learner_group.restore_from_path(str(learner_state_dir(ckpt).resolve()))
            self.algo.set_pipeline_state(self.progress)
            self.algo._publish_weights()
        else:
            self.algo.load_checkpoint(str((ckpt / ALGORITHM_DIR).resolve()))
        self.algo.restart_evaluation_schedule()  # due at the next multiple of eval_interval

    # --- run registry ----------------------------------------------------------------------

    def _run_record(self) -> RunRecord:
        cfg = self.cfg
        latest, best = self._latest_checkpoint, self._best_checkpoint
        return RunRecord(
            run_id=cfg.run_id or "",
            run_dir=str(self.paths.root.resolve()),
            env=cfg.game or cfg.env or "",
            model=cfg.model.value,
            status=RunStatus.RUNNING.value,
            config=cfg.to_dict(),
            started_at=float(self.progress["started_at"]),
            heartbeat_at=time.time(),
            env_steps=self.env_steps,
            total_steps=cfg.total_steps,
            updates=self.updates,
            episodes=int(self.progress.get("episodes", 0)),
            attempt=self.attempt,
            latest_checkpoint=latest[0] if latest else None,
            latest_checkpoint_steps=latest[1] if latest else None,
            best_checkpoint=best[0] if best else None,
            best_checkpoint_steps=best[1] if best else None,
            best_eval_return=self.best_return if math.isfinite(self.best_return) else None,
            host=this_host(),
            pid=os.getpid(),
        )

    def _heartbeat(self) -> None:
        self.recorder.heartbeat(
            env_steps=self.env_steps,
            updates=self.updates,
            episodes=int(self.progress.get("episodes", 0)),
            total_steps=self.cfg.total_steps,
            warning=self._guard_warning,
        )


def _one_line(err: BaseException) -> str:
    """The error as the registry's record shows it: its type and its first line."""
    return f"{type(err).__name__}: {first_line(err)}"[:500]
