"""Each example in ``examples/`` runs as a user would type it, on a tiny budget, and trains.

The examples are stock RLlib DQN (old and new API stack) on RLlib's own Atari Pong with our
network plugged in; each prints the Q-network it built and RLlib's step counters per iteration.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--iterations", "2", "--steps-per-iteration", "100", "--learning-starts", "50"]
Q_NETWORK_LINE = "q_network: DSQN obs_shape=(84, 84, 4) channels_last=True"


def run_example(name: str, *args: str) -> list[dict[str, float]]:
    """Run ``examples/<name>`` and return the counters of its ``iteration i: k=v ...`` lines."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    assert Q_NETWORK_LINE in lines, proc.stdout[-2000:]
    iterations = [line for line in lines if line.startswith("iteration ")]
    assert len(iterations) == 2, proc.stdout[-2000:]
    return [
        {k: float(v) for k, v in re.findall(r"(\w+)=(\S+)", line.split(":", 1)[1])}
        for line in iterations
    ]


@pytest.mark.slow
def test_old_stack_dqn_trains_the_dsqn_torch_model_v2_on_rllibs_atari_frames() -> None:
    first, second = run_example("old_stack_dqn_atari.py", *TINY)
    assert first["num_env_steps_sampled_lifetime"] >= 100
    assert second["num_env_steps_sampled_lifetime"] >= first["num_env_steps_sampled_lifetime"] + 100
    # Learning started at 50 steps: the policy took gradient steps in both iterations.
    assert 0 < first["num_grad_updates_lifetime"] < second["num_grad_updates_lifetime"]
    assert second["num_env_steps_trained"] > 0


@pytest.mark.slow
def test_new_stack_dqn_trains_the_rl_module_on_rllibs_atari_pong() -> None:
    first, second = run_example("new_stack_rl_module_pong.py", *TINY)
    assert first["num_env_steps_sampled_lifetime"] >= 100
    assert second["num_env_steps_sampled_lifetime"] >= first["num_env_steps_sampled_lifetime"] + 100
    # RLlib's DQNTorchLearner trained the module and its TD loss is a number.
    trained = [it["num_module_steps_trained_lifetime"] for it in (first, second)]
    assert 0 < trained[0] < trained[1]
    assert math.isfinite(second["qf_loss"])
