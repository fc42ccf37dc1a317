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
