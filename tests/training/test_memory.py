"""The Trainer fixes glibc's mmap threshold (training/memory.py): freed activation-sized buffers go back
to the system instead of staying in the heap. Checked in fresh processes, where the allocator's state is
known: one large free raises glibc's dynamic threshold, then 100 buffers of 1 MiB are allocated and all
but the last freed; without the fix they stay resident."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import sys, torch
from pretrained.training.memory import keep_large_blocks_mapped

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024

big = torch.ones(16 * 2**20 // 4)
del big  # glibc now serves blocks up to 16 MiB from the heap
fixed = keep_large_blocks_mapped() if sys.argv[1] == "fix" else False
before = rss_mb()
blocks = [torch.ones(2**20 // 4) for _ in range(100)]  # 100 x 1 MiB, pages touched
last = blocks[-1]
del blocks
print(fixed, rss_mb() - before)
"""


def retained_mb(mode: str) -> tuple[bool, float]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], check=True, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin"}).stdout.split()
    return out[0] == "True", float(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_buffers_leave_resident_memory_once_the_threshold_is_fixed():
    fixed, with_fix = retained_mb("fix")
    if not fixed:
        pytest.skip("this C library has no glibc mallopt")
    _, without = retained_mb("plain")
    assert without > 80  # the freed 99 MiB stayed in the heap, below the live block
    assert with_fix < 20  # each block had its own mapping, returned when freed


def test_a_threshold_chosen_by_the_user_is_kept(monkeypatch):
    from pretrained.training import memory

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    monkeypatch.setattr(memory, "_done", False)
    assert memory.keep_large_blocks_mapped() is False
