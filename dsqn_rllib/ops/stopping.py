"""Stopping a run on request: SIGINT / SIGTERM end the current iteration, never tear it apart.

    with StopSignals() as stop:               # in the driver's main thread, after ray.init
        while not done and not stop.requested:
            algo.train()                      # a signal here only sets stop.signum
        save(latest)                          # a second signal raises RunAborted at once
    sys.exit(stop.exit_code)                  # 130 (SIGINT) or 143 (SIGTERM)

The handlers are installed after ``ray.init`` on purpose: ``ray.init`` sets a SIGTERM handler
that calls ``sys.exit`` and a local head node (``ray._private.node.Node``) replaces it with one
that kills every Ray process of the node, then exits, while the driver's core worker still
runs (a C++ stack dump, exit 134, and no checkpoint). Ours replaces theirs for the run and puts
theirs back when the run ends. Ray starts its own processes with SIGINT blocked, so a
terminal's Ctrl-C (sent to the whole foreground process group) reaches only the driver.

The first signal writes one short notice with ``os.write`` (a handler may interrupt a
``print`` in progress; a second ``print`` from the handler would raise "reentrant call").

A SIGTERM sent to the whole process group (GNU ``timeout``, Slurm's ``scancel``, ``kill -TERM
-PGID``) would also reach the GCS, the raylet and the workers a local ``ray.init`` starts, which
shut down at once and take the run with them (no checkpoint; seen 1 time in 3). Ray blocks only
SIGINT in them, so ``ensure_ray`` starts them inside ``children_spared_sigterm()``: they inherit a
blocked SIGTERM (a signal mask survives fork and exec) and only the driver acts on it; Ray's own
shutdown still ends them (SIGKILL after a one-second grace).

Ray's ``ray.get`` runs Python's signal handlers from its C++ wait loop and turns whatever
KeyboardInterrupt they raise into a plain ``KeyboardInterrupt()``: a ``RunAborted`` raised while
the driver waits on an actor reaches the caller as that. ``StopSignals.aborted`` gives it back
(``stop.aborted(err)``), so an abort reads as one wherever the second signal landed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType, TracebackType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def children_spared_sigterm() -> Iterator[None]:
    """Processes started inside (from this thread) begin with SIGTERM blocked, for good; in this
    thread it is blocked only inside (a SIGTERM that came meanwhile is delivered on leaving)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def exit_code_for(signum: int) -> int:
    """The shell's convention for a process ended by a signal: 128 + its number."""
    return 128 + int(signum)


class RunAborted(KeyboardInterrupt):
    """A second stop signal while the run was stopping: give up at once, save nothing more.

    A KeyboardInterrupt, so code that lets Ctrl-C through (Ray's ``ray.get`` among it) lets
    this through too."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"aborted by a second {signal.Signals(signum).name}")
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return exit_code_for(self.signum)


class StopSignals:
    """Handlers for SIGINT and SIGTERM that ask the run to stop (a flag checked between
    iterations); a second signal raises ``RunAborted`` in the main thread.

    Installed on ``__enter__`` (main thread only: elsewhere Python cannot set handlers and
    this is a no-op, so a Trainer run in a thread keeps Ctrl-C as it was); the previous
    handlers (Ray's) are put back on ``__exit__``.
    """

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        """Starts the notice the first signal writes (e.g. the run id)."""
        self.signum: int | None = None
        self.aborted_by: int | None = None
        """The second signal, once one came (``RunAborted`` was raised for it)."""
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int | None:
        return None if self.signum is None else exit_code_for(self.signum)

    def request(self, signum: int) -> None:
        """What a signal does (public so the logic is testable without sending one)."""
        if self.signum is not None:
            self.aborted_by = int(signum)
            raise RunAborted(signum)
        self.signum = int(signum)
        again = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        line = (
            f"{self.prefix}{signal.Signals(signum).name}: stopping after this iteration and "
            f"saving a checkpoint ({again} again to abort)\n"
        )
        with contextlib.suppress(OSError, ValueError, AttributeError):  # no stderr: flag only
            os.write(sys.stderr.fileno(), line.encode())

    def aborted(self, err: BaseException) -> RunAborted | None:
        """The abort that ``err`` is: itself, or the ``RunAborted`` that Ray's ``ray.get``
        turned into a plain KeyboardInterrupt (see the module's note); None for anything else."""
        if isinstance(err, RunAborted):
            return err
        if isinstance(err, KeyboardInterrupt) and self.aborted_by is not None:
            return RunAborted(self.aborted_by)
        return None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        del frame
        self.request(signum)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for signum, previous in self._previous.items():
            # None: a handler not set from Python; the default is the closest we can restore.
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        self._previous.clear()
