"""CPU threads: ``threads`` in params.yaml (``all``, the default: every CPU this process may use;
``N``; or ``adaptive``, opt-in: ``all`` less the CPUs other processes keep busy, so its results
follow the load). The count changes a convolution's float summation order, so it comes from the
params and the machine, never from the moment; why ``all`` is slow beside other work, and the
measurements: docs/speed.md#threads.
"""

import os
import time
from pathlib import Path

import torch


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


class Adaptive:
    """``threads: adaptive``: every usable CPU that other processes leave free, rounded, at
    least 1. :meth:`tick`, called between steps, measures after ``FIRST`` s of work, then every
    ``WINDOW`` s:
    the busy time of this process's CPUs in /proc/stat less its own CPU time, over the
    window; the count changes when the free CPUs differ from it by more than ``MARGIN``
    (so that a load near a half CPU does not make it flap). Where /proc/stat cannot be
    read, the count stays."""

    FIRST, WINDOW, MARGIN = 0.2, 2.0, 0.6
    TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __init__(self, cpus: int):
        self.cpus, self.count, self.window = cpus, cpus, self.FIRST
        self.which = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(cpus))
        self.mark = self._now()

    def _now(self) -> tuple[float, float, float] | None:
        try:
            busy = 0
            for line in Path("/proc/stat").read_text().splitlines():
                name, *ticks = line.split()
                if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in self.which:
                    values = [int(t) for t in ticks]
                    busy += sum(values[:3]) + sum(values[5:7])  # user nice system (idle iowait) irq softirq
            return time.monotonic(), busy / self.TICK, time.process_time()
        except (OSError, ValueError, IndexError):
            return None

    def tick(self) -> str | None:
        """A line saying so when the count changes (None otherwise)."""
        if self.mark is None or time.monotonic() - self.mark[0] < self.window:
            return None
        (t0, busy0, own0), now = self.mark, self._now()
        if now is None:
            return None
        self.mark, self.window = now, self.WINDOW
        others = min(self.cpus, max(0.0, (now[1] - busy0 - (now[2] - own0)) / (now[0] - t0)))
        count = max(1, min(self.cpus, round(self.cpus - others)))
        if abs(self.cpus - others - self.count) <= self.MARGIN or count == self.count:
            return None
        before, self.count = self.count, count
        torch.set_num_threads(count)
        return f"{count} thread{'s' if count > 1 else ''} (other processes keep {others:.1f} of {self.cpus} CPUs busy), was {before}"


def set_threads(threads: int | str) -> Adaptive | None:
    """Run this process's torch computations on the ``threads`` of params.yaml (``all``, N or
    ``adaptive``: the :class:`Adaptive` to tick between steps), with denormal floats
    flushed to zero.

    Denormals (magnitudes below 1.2e-38, which Adam's second moments of near-dead units
    reach) cost the CPU tens of cycles an operation; flushed, the default run's stage-2 steps
    are much faster and its loss the same (docs/speed.md#denormal-floats). Threads started
    later inherit the setting."""
    torch.set_flush_denormal(True)
    count = threads if isinstance(threads, int) else available_cpus()
    torch.set_num_threads(count)
    return Adaptive(count) if threads == "adaptive" else None
