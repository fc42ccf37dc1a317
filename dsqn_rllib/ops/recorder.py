"""``RunRecorder``: one run's writes to the run registry, made the same way by the ``dsqn train``
driver (``dsqn_rllib.run.Trainer``) and a Tune trial's ``RunObserver`` callback.

A registry that fails never stops training (the run's files hold everything). The first failed
write is one line; later writes are skipped for ``retry_s`` (a registry that hangs would
otherwise cost a connect timeout per write, several per iteration); once it answers again the
whole record and every evaluation are rewritten, so nothing written meanwhile is lost. The final
status is tried even while backing off; where it fails too, the record waits in the outbox
(``defer_record``) for the next ``dsqn`` command that opens this registry.

Pure Python: no Ray, no torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dsqn_rllib.ops.registry import (
    CheckpointKind,
    RegistryError,
    RunRecord,
    RunRegistry,
    RunStatus,
    defer_record,
)


class RunRecorder:
    """Writes one run's record, heartbeats, checkpoints, evaluations and final status."""

    retry_s = 30.0
    """After a failed write, skip writes this long (the final status is tried regardless)."""

    def __init__(
        self,
        registry: RunRegistry,
        record: Callable[[], RunRecord],
        evaluations: Callable[[], Sequence[dict[str, Any]]],
        say: Callable[[str], None],
    ) -> None:
        self.registry = registry
        self._record = record
        """The run's whole record as of now (what a rewrite and the outbox hold)."""
        self._evaluations = evaluations
        """Every evaluation of the run, superseded ones included."""
        self.say = say
        self.behind = False
        """A write failed: the whole record is rewritten when the registry answers."""
        self._retry_at = 0.0

    @property
    def run_id(self) -> str:
        return self._record().run_id

    # --- what a run records -------------------------------------------------------------

    def start(self) -> None:
        """The run's whole record and evaluations (a new run, or an attempt that resumes)."""
        self.write(self._write_whole)

    def heartbeat(self, **progress: Any) -> None:
        """``RunRegistry.heartbeat``'s progress: env_steps, updates, episodes, total_steps,
        warning."""
        self.write(lambda r: r.heartbeat(self.run_id, **progress))

    def evaluation(self, record: dict[str, Any]) -> None:
        self.write(lambda r: r.record_evaluation(self.run_id, record))

    def checkpoint(
        self, kind: CheckpointKind, path: Path, env_steps: int, best: float | None = None
    ) -> None:
        if kind is CheckpointKind.BEST:
            self.write(lambda r: r.record_checkpoint(self.run_id, kind, path, env_steps, best))
        else:
            self.write(lambda r: r.record_checkpoint(self.run_id, kind, path, env_steps))

    def finish(self, status: RunStatus, error: str | None = None) -> Path | None:
        """The final status; where the registry does not take it, the record goes into the
        outbox: its file is returned (None when the registry took it)."""
        self.write(lambda r: r.finish(self.run_id, status, error=error), now=True)
        if not self.behind:
            return None
        return defer_record(
            self.registry.config,
            self._record(),
            list(self._evaluations()),
            status=status,
            error=error,
        )

    # --- the writes -----------------------------------------------------------------------

    def write(self, write: Callable[[RunRegistry], None], *, now: bool = False) -> None:
        """Run ``write`` against the registry (see the module doc). ``now``: try even while
        backing off."""
        if self.behind and not now and time.time() < self._retry_at:
            return  # the whole record is rewritten on the next try, this write included
        try:
            if self.behind:
                self._write_whole(self.registry)
                self.behind = False
                self.say(f"[{self.run_id}] run registry at {self.registry.where} answers again")
            write(self.registry)
        except RegistryError as err:
            if not self.behind:
                self.say(f"[{self.run_id}] warning: {err}; training goes on")
            self.behind = True
            self._retry_at = time.time() + self.retry_s

    def _write_whole(self, registry: RunRegistry) -> None:
        record = self._record()
        registry.start_run(record)
        registry.put_evaluations(record.run_id, list(self._evaluations()))
