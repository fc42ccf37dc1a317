"""Process-level performance settings for the processes that train (learner, env runners).

Explicit calls, never import side effects: a user of the core from plain PyTorch decides.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory_mapped() -> bool:
    """Stop glibc from returning large freed blocks to the OS after every use.

    A spiking forward allocates tens of MB per layer ([T, B, ...] tensors); by default glibc
    serves such blocks with fresh mmaps and unmaps them on free, so every learner update pays
    page faults and page zeroing again (measured: ~15% of a DSQN T=8 update on CPU). Keeping
    them mapped costs no extra peak memory. Returns whether the setting was applied (glibc only).
    """
    if not sys.platform.startswith("linux"):
        return False
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    try:
        libc = ctypes.CDLL(libc_name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # Blocks under 1 GiB come from the heap and stay mapped; trim only past 2 GiB free.
    ok_mmap = mallopt(_M_MMAP_THRESHOLD, 1 << 30) == 1
    ok_trim = mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1) == 1
    return ok_mmap and ok_trim
