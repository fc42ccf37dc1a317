import sys

import pytest
import torch

from dsqn_rllib import DSQN
from dsqn_rllib.ops.runtime import keep_freed_memory_mapped


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_allocator_setting_applies_and_the_network_still_works() -> None:
    assert keep_freed_memory_mapped() is True
    q = DSQN((4, 84, 84), 6, T=2)(torch.zeros(2, 4, 84, 84))
    assert q.shape == (2, 6)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_eta_waits_for_learning_then_follows_the_recent_rate() -> None:
    from dsqn_rllib.ops.progress import Eta, duration_text

    clock = Clock()
    eta = Eta(total_steps=20_000, learning_starts=5_000, window_s=100.0, clock=clock)
    for steps in (1_000, 4_000):  # the warm-up samples fast and promises nothing
        clock.now += 10
        eta.update(steps)
        assert eta.text() == "ETA once learning starts (5,000 steps)"
    clock.now += 10
    eta.update(5_000)
    assert eta.text() == "ETA soon known"
    for _ in range(20):  # 10 steps/s once learning
        clock.now += 10
        eta.update(eta._points[-1][1] + 100)
    assert eta.steps_per_s == 10.0
    assert eta.seconds_left() == (20_000 - 7_000) / 10.0 and eta.text() == "ETA 21m 40s"
    for _ in range(20):  # the machine got twice as busy: the window forgets the old rate
        clock.now += 10
        eta.update(eta._points[-1][1] + 50)
    assert eta.steps_per_s == 5.0
    assert [duration_text(s) for s in (45, 250, 11_520, 46 * 86_400 + 5 * 3_600)] == [
        "45s", "4m 10s", "3h 12m", "46d 5h",
    ]  # fmt: skip


def test_the_eta_follows_the_learner_while_env_steps_wait_for_it() -> None:
    """Just after learning starts the learner catches up on due updates and the runners wait:
    with the replay ratio the ETA follows updates x steps per update, not the stalled steps."""
    from dsqn_rllib.ops.progress import Eta

    clock = Clock()
    by_steps = Eta(total_steps=20_000_000, learning_starts=50_000, clock=clock)
    by_updates = Eta(
        total_steps=20_000_000, learning_starts=50_000, clock=clock, steps_per_update=4
    )
    for i in range(10):  # 10 s iterations: 1.3 updates/s, env steps almost still
        clock.now += 10
        for eta in (by_steps, by_updates):
            eta.update(50_560 + 2 * i, updates=13 * i)
    assert by_updates.steps_per_s == 1.3 * 4
    assert by_updates.seconds_left() == (20_000_000 - 50_578) / 5.2  # 44 days
    assert by_steps.seconds_left() > 10 * by_updates.seconds_left()  # 3 years: what it said


def test_a_resumed_run_warms_up_again_from_where_it_resumed() -> None:
    from dsqn_rllib.ops.progress import Eta

    eta = Eta(total_steps=100_000, learning_starts=1_000, start_steps=60_000)
    eta.update(60_500)
    assert eta.text() == "ETA once learning starts (61,000 steps)"
