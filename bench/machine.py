"""The CPU a benchmark ran on, for its header line: ratios depend on it. pretrained's inference linear runs
on oneDNN and transformers' on MKL, whose float32 matmuls differ in speed by processor (on the AMD EPYC
we measured, oneDNN's were up to 1.6x MKL's; an Intel Xeon narrows that gap)."""

from __future__ import annotations

import platform


def cpu() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
