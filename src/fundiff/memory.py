"""Process memory settings: keep freed memory instead of returning it to the kernel every step.

A UNet forward pass on a CFG batch allocates and frees activations of tens of MB many
times. glibc serves allocations above its mmap threshold (128 KiB, adapting up to 32 MiB)
with fresh ``mmap`` calls and unmaps them on ``free``, so every step pays for millions of
minor page faults: on a 2-core Xeon, sampling spent more time in the kernel than in the
UNet (``benchmarks/allocator.py`` measures it). Raising the mmap and trim thresholds makes
glibc keep and reuse that memory. This changes process state, so library code never calls
it: the ``fundiff`` command does at start-up, and a Python user may call it once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc's mallopt parameters (malloc.h) and the values fundiff sets
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 1 << 30  # serve allocations below 1 GiB from the heap, never a fresh mmap
TRIM_THRESHOLD = (1 << 31) - 1  # keep up to 2 GiB of free memory at the top of the heap
TOP_PAD = 64 << 20  # grow the heap in 64 MiB steps (untouched pages cost no memory)


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse (Linux/glibc only). True if it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD))
    return all(mallopt(param, value) == 1 for param, value in settings)
