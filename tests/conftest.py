"""Suite-wide isolation: a test that starts Ray in this process (a Trainer, an Algorithm)
must not hand its Ray to the next test, whose own ``ray.init`` would then fail."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_ray_left_behind() -> Iterator[None]:
    yield
    import sys

    ray = sys.modules.get("ray")  # tests that never imported Ray pay nothing
    if ray is not None and ray.is_initialized():
        ray.shutdown()
