"""Keeping a training process's resident memory near its live tensors.

PyTorch's CPU tensors come from the C allocator. glibc's malloc serves large blocks with mmap, but each
time such a block is freed it raises its mmap threshold to that size (up to 32 MiB), so after the first
step every activation buffer comes from the heap instead; a freed heap block below a live one cannot go
back to the operating system, and a step's pattern of allocations leaves the heap full of such holes.
On SmolLM2-135M LoRA (bench/lora.py) that made the peak RSS ~1.6x the tensors alive at any moment.
Fixing the threshold (which also turns the adjustment off) keeps large buffers in their own mappings,
returned to the system when freed. Users who set MALLOC_MMAP_THRESHOLD_ themselves keep their value.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
THRESHOLD = 128 * 1024  # glibc's initial value: blocks from 128 KiB up get their own mapping

_done = False


def keep_large_blocks_mapped() -> bool:
    """Fix glibc's mmap threshold for this process (once); False where there is no glibc mallopt or the
    user chose a threshold through the environment."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt  # glibc's; other C libraries (musl) have none
    except (OSError, AttributeError):
        return False
    _done = bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD))
    return _done
