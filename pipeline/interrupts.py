"""Ctrl-C and SIGTERM as exceptions, held back across calls that must not be cut in half.

SIGTERM, what `timeout`, SLURM and Kubernetes send before they kill, raises
:class:`Terminated` (a KeyboardInterrupt: a stage stops as on Ctrl-C) once :func:`install`
has run. Inside :func:`deferred` (each call to MLflow: a write cut in half can leave the
store's transaction open, and the calls after it, such as marking the run KILLED, fail) a
signal is noted and raised as the block ends.
"""

import contextlib
import signal


class Terminated(KeyboardInterrupt):
    """SIGTERM: a stage stops as on Ctrl-C (the last finished epoch saved, the MLflow run
    KILLED) and exits 143."""


_held = {"depth": 0, "signal": None}


def _raise(signum: int) -> None:
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _handler(signum, frame):
    if _held["depth"]:
        _held["signal"] = _held["signal"] or signum
    else:
        _raise(signum)


def install() -> None:
    """SIGINT and SIGTERM raise (KeyboardInterrupt, :class:`Terminated`), held back in :func:`deferred`."""
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


@contextlib.contextmanager
def deferred():
    """Hold a signal that lands in this block until it ends (then raise it)."""
    _held["depth"] += 1
    try:
        yield
    finally:
        _held["depth"] -= 1
        if not _held["depth"] and (signum := _held["signal"]):
            _held["signal"] = None
            _raise(signum)
