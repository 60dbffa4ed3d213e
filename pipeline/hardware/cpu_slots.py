"""At most one computing stage per CPU among the experiments of a DVC queue.

``dvc queue start -j N`` with N above the CPUs runs N stages at once, time-sliced: each
then takes longer than N / CPUs times its time alone (every switch refills the caches,
and the queue's own DVC processes compete), and 4 experiments on 2 CPUs finished later
with ``-j 4`` than with ``-j 2`` (bench/shared.py (d), docs/speed.md). So a stage that
a queue worker runs (its working folder is a copy under ``<repo>/.dvc/tmp/exps/``, as for
``dvc exp run --temp``) takes one of ``available_cpus()`` slots before its work and
holds it to its exit. A slot is an exclusive ``flock`` on a file in
``<repo>/.dvc/tmp/cpu-slots/``: the kernel frees it when the process ends, however it
ends, so a killed stage never leaves one taken. Stages outside a queue, and the ranks of
a torchrun job, take no slot; ``BVAE_THREADS`` (the user pins the CPUs) turns it off.

An experiment keeps its CPU between its stages: a stage that ends well writes its
experiment's folder and the time into its slot file (:func:`keep_for_next`), and for
``KEEP`` seconds a stage of another experiment passes that slot by, so the next stage of
the same experiment, which DVC starts a few seconds later, gets it. With more workers than
CPUs the experiments then run through their stages as ``-j <CPUs>`` runs them, instead of
interleaving a stage of each (which ran 4 experiments on 2 CPUs 5 to 12 % slower with
``-j 4`` than with ``-j 2``: docs/speed.md).
"""

import fcntl
import os
import sys
import time
from pathlib import Path

POLL = 0.2  # seconds between tries while every slot is taken
KEEP = 15.0  # seconds a slot stays kept for its experiment's next stage (DVC starts it within a few)


def slots_folder(cwd: Path) -> Path | None:
    """``<repo>/.dvc/tmp/cpu-slots`` when ``cwd`` is an experiment's copy under
    ``<repo>/.dvc/tmp/exps/``, else None."""
    for folder in cwd.parents:
        if folder.name == "exps" and folder.parent.name == "tmp" and folder.parent.parent.name == ".dvc":
            return folder.parent / "cpu-slots"
    return None


def hold(stage: str, cpus: int, cwd: Path | None = None) -> int | None:
    """Take one of ``cpus`` slots for this process, waiting (one line on stderr) while all
    are taken; return the open lock file's descriptor, which stays open to the process's
    exit (None: no slot needed)."""
    if os.environ.get("BVAE_THREADS") or "LOCAL_WORLD_SIZE" in os.environ:
        return None
    folder = slots_folder((cwd or Path.cwd()).resolve())
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    fds = [os.open(folder / f"{i}.lock", os.O_RDWR | os.O_CREAT, 0o644) for i in range(cpus)]
    waited_since = None
    mine = str((cwd or Path.cwd()).resolve())
    while True:
        for fd in fds:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            if _kept_for_another(fd, mine):
                fcntl.flock(fd, fcntl.LOCK_UN)
                continue
            os.ftruncate(fd, 0)
            for other in fds:
                if other != fd:
                    os.close(other)
            if waited_since is not None:
                print(f"{stage}: got a CPU after {time.monotonic() - waited_since:.1f} s", file=sys.stderr, flush=True)
            return fd
        if waited_since is None:
            waited_since = time.monotonic()
            print(
                f"{stage}: waiting for a CPU: this DVC queue has more stages running than its {cpus} CPU"
                f"{'s' if cpus > 1 else ''}; it starts when one of them ends",
                file=sys.stderr,
                flush=True,
            )
        time.sleep(POLL)


def _kept_for_another(fd: int, mine: str) -> bool:
    """Whether the slot ``fd`` (locked by this process) is kept for another experiment's next stage."""
    os.lseek(fd, 0, os.SEEK_SET)
    experiment, _, since = os.read(fd, 4096).decode(errors="replace").partition("\n")
    try:
        return bool(experiment) and experiment != mine and time.time() - float(since) < KEEP
    except ValueError:
        return False


def keep_for_next(fd: int | None, cwd: Path | None = None) -> None:
    """Keep the slot ``fd`` (held to this process's exit) for the next stage of this
    experiment for ``KEEP`` seconds after now (called when a stage has ended well)."""
    if fd is None:
        return
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{(cwd or Path.cwd()).resolve()}\n{time.time()}".encode(), 0)
