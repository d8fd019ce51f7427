import subprocess
import sys

import pytest

CHILD = r"""
import resource, sys, torch
from fundiff.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
torch.set_num_threads(1)
x = torch.randn(64, 1, 28, 28)
w = torch.ones(64, 1, 3, 3) / 9  # each output (64, 64, 28, 28) is ~13 MB: above glibc's default mmap threshold
torch.nn.functional.conv2d(x, w, padding=1)  # a first step outside the count: its buffers are new anyway
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    y = torch.nn.functional.conv2d(x, w, padding=1)
    del y
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings are Linux-only")
@pytest.mark.slow
def test_keep_freed_memory_stops_page_faulting_large_buffers_back():
    """With glibc's defaults every large buffer is a fresh mmap (page faults each step); kept memory is reused."""

    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", CHILD, mode], check=True, capture_output=True, text=True)
        return int(out.stdout.strip())

    default, kept = faults("default"), faults("keep")
    # ~13 MB / 4 KiB = 3,174 pages faulted in again on each of the 20 steps (a few fewer where the kernel
    # backs part of a buffer with a huge page: 56,516 in all on one CI machine)
    assert default > 20 * 2000
    # kept: the warmed-up buffers are reused, so the counted steps fault in (almost) nothing
    assert kept < default / 10, (default, kept)
