"""The progress line of `dsqn train` (``progress_line``) and its ETA, from the rate of the last
minutes of training.

    eta = Eta(total_steps=cfg.total_steps, learning_starts=cfg.learning_starts,
              start_steps=env_steps,      # env steps already done (a resumed run)
              steps_per_update=cfg.train_every)
    ...                                   # after every training iteration:
    eta.update(env_steps, updates)
    line += f" | {eta.text()}"            # "ETA 3h 12m" / "ETA once learning starts (..)"

Before learning starts the runners only sample (no updates): that rate says nothing of what
comes after (a DSQN on 2 cores: ~400 steps/s of warm-up, ~5 steps/s once it learns), so no
ETA is promised until then. After, the rate (the learner's: updates/s x env steps per update)
is measured over a sliding window of wall time, so a slow start or a changed machine load
fades out.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any


def duration_text(seconds: float) -> str:
    """``45s``, ``4m 10s``, ``3h 12m``, ``46d 5h`` (two units at most)."""
    if not math.isfinite(seconds):
        return "?"
    s = max(0, round(seconds))
    days, s = divmod(s, 86_400)
    hours, s = divmod(s, 3_600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {s:02d}s"
    return f"{s}s"


class Eta:
    """Time left to ``total_steps`` at the rate of the last ``window_s`` seconds.

    With ``steps_per_update`` (the replay ratio, ``train_every``) the rate is the learner's:
    updates/s x steps per update. The pipeline holds that ratio exactly, so it is the env-step
    rate, but it is also right while the env steps stall: just after learning starts the
    learner catches up on the updates the last chunks made due (~100 s for a DSQN on 2 cores)
    and the runners wait, which an env-step rate would read as an ETA of a year."""

    def __init__(
        self,
        total_steps: int,
        learning_starts: int = 0,
        start_steps: int = 0,
        window_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        steps_per_update: int | None = None,
    ) -> None:
        self.total_steps = int(total_steps)
        # The replay is not checkpointed: a resumed run warms up again from where it resumed.
        self.learning_begins_at = int(start_steps) + int(learning_starts)
        self.window_s = float(window_s)
        self.clock = clock
        self.steps_per_update = steps_per_update
        self._points: deque[tuple[float, int, int]] = deque()  # (time, env steps, updates)

    def update(self, env_steps: int, updates: int = 0) -> None:
        """Record the env steps (and learner updates) done now (once per training iteration)."""
        if env_steps < self.learning_begins_at:
            return
        now = self.clock()
        self._points.append((now, int(env_steps), int(updates)))
        # Keep one point older than the window, so the window is always fully spanned.
        while len(self._points) > 2 and now - self._points[1][0] >= self.window_s:
            self._points.popleft()

    @property
    def steps_per_s(self) -> float | None:
        if len(self._points) < 2:
            return None
        (t0, s0, u0), (t1, s1, u1) = self._points[0], self._points[-1]
        if self.steps_per_update:
            s0, s1 = u0 * self.steps_per_update, u1 * self.steps_per_update
        return (s1 - s0) / (t1 - t0) if t1 > t0 and s1 > s0 else None

    def seconds_left(self) -> float | None:
        """None until learning has run for two iterations (no rate worth the name)."""
        rate = self.steps_per_s
        if rate is None:
            return None
        done = self._points[-1][1]
        return max(0, self.total_steps - done) / rate

    def text(self) -> str:
        left = self.seconds_left()
        if left is not None:
            return f"ETA {duration_text(left)}"
        if not self._points:
            return f"ETA once learning starts ({self.learning_begins_at:,} steps)"
        return "ETA soon known"


def progress_line(
    report: dict[str, Any],
    total_steps: int,
    *,
    frame_skip: int,
    last_eval: float | None,
    best_eval: float,
    eta: str,
) -> str:
    """An iteration's console line: steps, throughput, training return, ε, TD loss, the last
    evaluation and the best, the ETA."""
    rate = report.get("env_steps_per_s", 0.0)
    evaluated = f" | eval {last_eval:.1f} (best {best_eval:.1f})" if last_eval is not None else ""
    return (
        f"step {report['env_steps']:,}/{total_steps:,}"
        f" | {rate:,.0f} steps/s ({rate * frame_skip:,.0f} frames/s)"
        f" | {report.get('updates_per_s', 0.0):,.1f} updates/s"
        f" | return {report.get('episode_return_mean', math.nan):.1f}"
        f" | ε {report.get('epsilon', math.nan):.3f}"
        f" | loss {report.get('td_loss', math.nan):.4f}"
        f"{evaluated}"
        f" | {eta}"
    )
