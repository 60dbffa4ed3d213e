"""CPU threads: ``threads`` in params.yaml (1 by default), the same for every run of the
same params, whatever else the machine does and whether DVC's queue or ``dvc repro`` runs it.

Why a param, and why one thread by default (measured: docs/speed.md#threads): the thread
count changes a convolution's float summation order, so a count chosen from the machine's
load or from the DVC queue gives other bytes; and two threads, 1.2 to 1.8x faster per step
on a quiet 2-core machine, are 3 to 12x slower than one beside a single busy process (torch's
OpenMP threads meet after every op and wait for one that the other process has descheduled).
One thread a stage never waits, and ``dvc queue start -j <CPUs>`` then uses every CPU.
"""

import os
from pathlib import Path


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (containers)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            n = min(n, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return n


def set_threads(threads: int) -> int:
    """Run this process's torch computations on ``threads`` intra-op threads; returns it."""
    import torch

    torch.set_num_threads(threads)
    return threads
