"""The architecture, checked: the spiking core knows nothing of Ray, RLlib is imported only in
its adapter package, and the replay needs neither torch nor Ray."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dsqn_rllib"
RLLIB_IMPORT = re.compile(r"^\s*(from|import)\s+ray\.rllib\b", re.M)


def test_only_the_rllib_package_imports_rllib() -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "rllib" not in path.relative_to(PACKAGE).parts[:1]
        and RLLIB_IMPORT.search(path.read_text())
    ]
    assert offenders == []


@pytest.mark.parametrize(
    ("modules", "absent"),
    [
        (["dsqn_rllib.snn.networks", "dsqn_rllib.snn.energy", "dsqn_rllib.snn.spike_init"], "ray"),
        (["dsqn_rllib.envs.atari", "dsqn_rllib.evaluation.protocol"], "ray"),
        (["dsqn_rllib.replay.frame_replay"], "torch"),
        (["dsqn_rllib.ops.registry", "dsqn_rllib.ops.recorder"], "ray"),
    ],
)
def test_a_layer_does_not_pull_in_what_it_must_not_know(modules: list[str], absent: str) -> None:
    code = f"import sys; import {', '.join(modules)}; assert {absent!r} not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_top_level_names_still_import() -> None:
    import dsqn_rllib

    for name in dsqn_rllib.__all__:
        assert getattr(dsqn_rllib, name) is not None, name


def test_the_package_uses_no_private_torch_api() -> None:
    """``torch._something`` may change or vanish in any release (#16)."""
    private = re.compile(r"\btorch\._[a-z]")
    users = [
        f"{path.relative_to(PACKAGE)}:{n}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if private.search(line)
    ]
    assert users == []
