"""The CPUs other processes keep busy, measured, so that a stage on a shared machine takes
the share they leave instead of fighting for it.

Why: torch's CPU operators run on OpenMP threads that meet at a barrier after every
op. When two processes each run one thread per CPU, every op waits for a thread the
other process has descheduled: two default train_vae runs side by side on 2 cores each
took 6.6x their time alone, where sharing fairly costs 2x. A stage that runs as many
threads as the CPUs others leave free keeps its threads on CPUs of their own.

How: over a window (since :class:`Load` was made or last read), from the busy time of
each CPU this process may run on (``/proc/stat``, clock ticks: user, nice, system and
interrupts), less the CPU time of this process and of its children (the stage's
tracking process; running or ended)::

    others = (busy time of our CPUs - our time - our children's time) / wall time   [CPUs]
    free   = CPUs - others

Under a cgroup CPU quota (a container), the busy time is the cgroup's own usage
(``cpu.stat``) and CPUs the quota: the processes that compete for it are the
container's. Where neither can be read (not Linux), nothing is measured and stages
keep their thread count.

Time a virtual machine's host takes from it (steal) does not count: on the 2-core VM of
this project, with 6 to 33 % of its CPU time stolen, 2 threads still ran stage 1's conv
steps 1.49x faster than 1 (``bench/threads.py``), and counting it made a quiet VM's
stage pick 1 or 2 threads from run to run.
"""

import os
import time
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


PROC, CGROUP = Path("/proc"), Path("/sys/fs/cgroup")
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _quota() -> float | None:
    """CPUs of the cgroup v2 quota, or None when there is none."""
    try:
        quota, period = (CGROUP / "cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _busy_seconds(cpus: set[int] | None) -> float | None:
    """Busy CPU seconds so far: the cgroup's usage (``cpus`` None) or the sum over ``cpus`` in /proc/stat."""
    try:
        if cpus is None:
            usage = next(
                line for line in (CGROUP / "cpu.stat").read_text().splitlines() if line.startswith("usage_usec")
            )
            return int(usage.split()[1]) / 1e6
        total = 0
        for line in (PROC / "stat").read_text().splitlines():
            name, *ticks = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                values = [int(t) for t in ticks]
                total += sum(values[:3]) + sum(values[5:7])  # user nice system (idle iowait) irq softirq
        return total / TICK
    except (OSError, ValueError, StopIteration, IndexError):
        return None


def _children_seconds(pid: int) -> float:
    """CPU seconds of the running children of ``pid`` (user + system, from /proc/<child>/stat)."""
    total = 0
    for stat in PROC.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid ...
        except (OSError, IndexError):
            continue  # ended meanwhile
        if int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


class Load:
    """The CPUs that processes other than this one and its children kept busy over a window."""

    def __init__(self):
        quota = _quota()
        affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
        self.cpus = min(quota, len(affinity)) if quota else float(len(affinity))
        self._which = None if quota and quota < len(affinity) else affinity
        self._mark = self._now()

    def _now(self) -> tuple[float, float | None, float]:
        ended = os.times()  # children_*: the children that ended and were waited for
        own = time.process_time() + _children_seconds(os.getpid()) + ended.children_user + ended.children_system
        return time.monotonic(), _busy_seconds(self._which), own

    def since(self) -> float:
        """Seconds since the window began."""
        return time.monotonic() - self._mark[0]

    def others(self) -> float | None:
        """CPUs kept busy by other processes since the window began (None where it cannot be
        measured); then a new window begins."""
        (t0, busy0, own0), (t1, busy1, own1) = self._mark, self._now()
        self._mark = (t1, busy1, own1)
        if busy0 is None or busy1 is None or t1 <= t0:
            return None
        return min(self.cpus, max(0.0, (busy1 - busy0 - (own1 - own0)) / (t1 - t0)))
