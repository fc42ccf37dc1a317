"""TensorBoard event files of a run: ``tensorboard --logdir runs`` shows every run and trial.

One small sink, fed the per-iteration report the algorithm puts in ``result["dsqn"]`` (the dict
``dsqn train`` writes to ``metrics.jsonl``), and each paper-protocol evaluation::

    sink = TensorBoardSink(run_dir)          # events.out.tfevents.* in run_dir
    sink.write(report)                       # every iteration, at step report["env_steps"]
    sink.write_evaluation(env_steps, mean, max)
    sink.close()

Scalars, their x axis the env steps, in a few flat namespaces (CleanRL's practice):

* ``charts/``: training ``episode_return_mean``, ``epsilon``;
* ``losses/``: ``td_loss``, ``q_mean``, ``q_max``;
* ``spikes/``: ``firing_rate/<layer>`` (each LIF layer, keyed by the layer driving it),
  ``per_inference`` (spikes one inference emits);
* ``energy/``: ``pj_per_inference`` (one inference = one env step's action) and the DQN twin's;
* ``perf/``: ``env_steps_per_s``, ``updates_per_s``;
* ``eval/``: ``return_mean``, ``return_max`` of the paper's protocol.

A missing, None or non-finite value is left out (a silent DSQN has no energy yet; a report
before the first update has no loss): TensorBoard would draw NaN as a gap at best.

``read_scalars`` reads the files back (tests, and users without TensorBoard installed).
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto import event_pb2
from tensorboardX.summary import scalar

# report key -> tag: the scalars of one iteration.
REPORT_SCALARS: dict[str, str] = {
    "episode_return_mean": "charts/episode_return_mean",
    "epsilon": "charts/epsilon",
    "td_loss": "losses/td_loss",
    "q_mean": "losses/q_mean",
    "q_max": "losses/q_max",
    "spikes_per_inference": "spikes/per_inference",
    "energy_pj_per_inference": "energy/pj_per_inference",
    "dqn_twin_energy_pj_per_inference": "energy/dqn_twin_pj_per_inference",
    "env_steps_per_s": "perf/env_steps_per_s",
    "updates_per_s": "perf/updates_per_s",
}
FIRING_RATE_PREFIX = "spikes/firing_rate/"
EVAL_MEAN_TAG = "eval/return_mean"
EVAL_MAX_TAG = "eval/return_max"


def _scalar(value: Any) -> float | None:
    """A finite float, or None for what TensorBoard should not get (None, NaN, inf, text)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class TensorBoardSink:
    """Writes a run's reports and evaluations as TensorBoard scalars into ``logdir``.

    ``purge_step``: on a resumed run, the env steps of the checkpoint it resumed from.
    TensorBoard then drops what the earlier process wrote at that step and after (steps the
    resumed run does again), so the curves do not fold back on themselves.
    """

    def __init__(self, logdir: str | Path, *, purge_step: int | None = None) -> None:
        self.logdir = Path(logdir).expanduser()
        self.logdir.mkdir(parents=True, exist_ok=True)
        # Events are written in the caller's thread. tensorboardX's SummaryWriter queues them
        # for a writer thread and its flush() does not wait for that queue, so a live
        # TensorBoard (or a test) could miss the newest iteration (seen in CI).
        # tensorboardX names a file by the second and the host: a second writer in the same
        # second (a quick resume) would truncate the first. The nanosecond suffix keeps both,
        # in the order TensorBoard reads them (by name).
        self._events = EventsWriter(str(self.logdir / "events"), f".{time.time_ns()}")
        self._closed = False
        if purge_step is not None:
            # What SummaryWriter(purge_step=...) writes: TensorBoard drops the earlier files'
            # events at this step and after.
            self._events.write_event(event_pb2.Event(step=purge_step, file_version="brain.Event:2"))
            start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
            self._events.write_event(event_pb2.Event(step=purge_step, session_log=start))
        self._events.flush()

    def write(self, report: Mapping[str, Any]) -> None:
        """One iteration's scalars at step ``report["env_steps"]``."""
        step = int(report["env_steps"])
        walltime = _scalar(report.get("time"))
        for key, tag in REPORT_SCALARS.items():
            self._add(tag, report.get(key), step, walltime)
        for layer, rate in sorted((report.get("firing_rates") or {}).items()):
            self._add(FIRING_RATE_PREFIX + str(layer), rate, step, walltime)
        self._events.flush()  # a run watched live: an iteration is seconds to minutes apart

    def write_evaluation(
        self, env_steps: int, mean: float, max: float, *, walltime: float | None = None
    ) -> None:
        """One evaluation (the paper's protocol) of the weights at ``env_steps``."""
        self._add(EVAL_MEAN_TAG, mean, int(env_steps), walltime)
        self._add(EVAL_MAX_TAG, max, int(env_steps), walltime)
        self._events.flush()

    def _add(self, tag: str, value: Any, step: int, walltime: float | None) -> None:
        number = _scalar(value)
        if number is not None:
            wall_time = time.time() if walltime is None else walltime
            event = event_pb2.Event(summary=scalar(tag, number), step=step, wall_time=wall_time)
            self._events.write_event(event)

    def flush(self) -> None:
        self._events.flush()

    def close(self) -> None:
        """Flush and close the file (a second call does nothing)."""
        if not self._closed:
            self._closed = True
            self._events.close()

    def __enter__(self) -> TensorBoardSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def event_files(logdir: str | Path) -> list[Path]:
    """The event files under ``logdir`` (recursively), in the order they were written."""
    return sorted(Path(logdir).rglob("events.out.tfevents.*"), key=lambda p: (p.parent, p.name))


def read_scalars(logdir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar under ``logdir`` as ``{tag: [(step, value), ...]}`` in written order.

    Reads the TFRecord framing itself (length, its CRC, the ``Event`` proto, its CRC) with
    tensorboardX's protos, so no TensorBoard install is needed; CRCs are not checked.
    """
    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in event_files(logdir):
        data = path.read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            start = pos + 12  # u64 length + u32 masked CRC of the length
            if start + length + 4 > len(data):
                break  # a record still being written
            event = event_pb2.Event.FromString(data[start : start + length])
            pos = start + length + 4  # + u32 masked CRC of the data
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars
