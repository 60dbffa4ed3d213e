"""Where a stage's time goes.

A stage's wall time runs from its process start (interpreter start-up and imports
count) to its exit. It splits into exclusive parts:

    work         what the stage is for: optimisation steps, feature extraction, sampling
    diagnostics  per-epoch latent statistics and gradient norms, image grids
    checkpoints  copying the training state and writing checkpoints/<stage>.pt
    tracking     MLflow: opening the store and the run, logging, models
    io           reading inputs, writing outputs, plots
    other        the rest after start-up (building models, moving tensors)

``startup`` is process start to the first ``work``. A part entered inside another
pauses the outer one, so the parts add up to the wall time. Overhead = wall - work.

``BVAE_TIMING=<file>`` appends one JSON line per stage process to that file at exit
(``bench/pipeline_time.py`` reads them); the stage's MLflow run also gets the parts
as ``time_<part>_s`` metrics and ``overhead_share``.
"""

import atexit
import functools
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

PARTS = ("work", "diagnostics", "checkpoints", "tracking", "io")


def process_start() -> float:
    """The ``time.time()`` at which this process started (Linux: /proc; elsewhere: when
    this module was first imported, which leaves out the interpreter's own start-up)."""
    try:
        stat = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - (uptime - int(stat[19]) / os.sysconf("SC_CLK_TCK"))  # field 22: starttime in ticks
    except (OSError, ValueError, IndexError, AttributeError):
        return time.time()


class Clock:
    """Exclusive seconds per part (see the module docstring)."""

    def __init__(self, now=time.time, started: float | None = None):
        self.now = now  # the clock (a test passes its own)
        self.started = process_start() if started is None else started
        self.seconds = dict.fromkeys(PARTS, 0.0)
        self._at_first_work: dict[str, float] = {}  # the parts' seconds when the first work began
        self.first_work: float | None = None
        self._stack: list[list] = []  # [part, entered at] of the parts now running, innermost last

    @contextmanager
    def part(self, name: str):
        now = self.now()
        if self._stack:  # pause the enclosing part
            outer = self._stack[-1]
            self.seconds[outer[0]] += now - outer[1]
            outer[1] = now
        if name == "work" and self.first_work is None:
            self.first_work = now
            self._at_first_work = dict(self.seconds)
        self._stack.append([name, now])
        try:
            yield
        finally:
            now = self.now()
            self.seconds[name] += now - self._stack.pop()[1]
            if self._stack:
                self._stack[-1][1] = now

    def summary(self) -> dict:
        """``wall`` (so far), ``startup`` (to the first work; ``startup_<part>`` of it spent
        in a part), every part after it, ``other`` and ``overhead_share`` = 1 - work / wall.
        startup + parts + other = wall."""
        now = self.now()
        wall = now - self.started
        start = self._at_first_work if self.first_work is not None else self.seconds
        out = {"wall": wall, "startup": (self.first_work or now) - self.started}
        out |= {f"startup_{k}": v for k, v in start.items() if v > 0}
        out |= {k: v - start.get(k, 0.0) for k, v in self.seconds.items()}
        out["other"] = max(0.0, wall - out["startup"] - sum(out[k] for k in PARTS))
        out["overhead_share"] = 1 - self.seconds["work"] / wall if wall > 0 else 0.0
        return out


CLOCK = Clock()


def part(name: str):
    """``with part("io"): ...``: count the block's time to ``name`` (module-wide clock)."""
    return CLOCK.part(name)


def timed(name: str):
    """Decorator form of :func:`part`."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            with CLOCK.part(name):
                return fn(*args, **kwargs)

        return inner

    return wrap


def record(stage: str) -> None:
    """At exit, append this stage's summary to ``$BVAE_TIMING`` (when set)."""
    path = os.environ.get("BVAE_TIMING")
    if not path or int(os.environ.get("RANK", "0")) != 0:
        return

    def write():
        line = json.dumps({"stage": stage, "pid": os.getpid(), **CLOCK.summary()})
        try:
            with open(path, "a") as f:
                f.write(line + "\n")
        except OSError as e:
            print(f"warning: could not write the timing to {path}: {e}", file=sys.stderr)

    atexit.register(write)
