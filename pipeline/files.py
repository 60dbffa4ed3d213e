"""Writing outputs: atomically (a failed stage leaves none half-written), and JSON/CSV."""

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from pipeline import DiskFull
from pipeline.hardware.timing import timed

WRITTEN: list[Path] = []  # the outputs this process wrote: a stage that fails removes them (stages.command)


@contextmanager
def atomic_path(path: str | os.PathLike, output: bool = True):
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds
    (and note it in WRITTEN when it is an ``output``, not resumable state such as a checkpoint).
    The temporary file has ``path``'s own name (in a hidden folder beside it): writers that
    record their file's name, as ``torch.save`` does inside its zip, then write the same
    bytes for the same content, so DVC sees an unchanged hash."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    except OSError as e:
        raise _disk_full(path, 0) if e.errno in (errno.ENOSPC, errno.EDQUOT) else e from None
    tmp = folder / path.name
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # outputs get the usual permissions
        os.replace(tmp, path)
        if output:
            WRITTEN.append(path)
    except Exception as e:
        full = isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)
        # torch.save and PIL report a full disk without an errno ("file write failed"): look at the disk
        if full or shutil.disk_usage(path.parent).free < FULL_BELOW:
            raise _disk_full(path, tmp.stat().st_size if tmp.exists() else 0) from None
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)


FULL_BELOW = 1 << 20  # bytes free under which a failed write is put down to a full disk


def _disk_full(path: Path, written: int) -> DiskFull:
    free = shutil.disk_usage(path.parent if path.parent.exists() else ".").free
    return DiskFull(
        f"cannot write {path}: its file system is full ({free / 1e6:.1f} MB free; the file needs more than "
        f"the {written / 1e6:.1f} MB written when it filled). Free some space, then run `dvc repro` again "
        "(a training stage resumes from its last checkpoint)"
    )


@timed("io")
def save_torch(obj, path, output: bool = True) -> None:
    import torch

    with atomic_path(path, output) as tmp:
        torch.save(obj, tmp)


@timed("io")
def write_json(obj, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


@timed("io")
def read_json(path) -> dict:
    return json.loads(Path(path).read_text())


@timed("io")
def write_csv(rows: list[dict], path) -> None:
    """Write a list of same-keyed dicts as CSV (the per-epoch history DVC plots read)."""
    keys = list(rows[0].keys())
    lines = [",".join(keys)] + [",".join(_fmt(r[k]) for k in keys) for r in rows]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _fmt(v) -> str:
    return repr(float(v)) if isinstance(v, float) else str(v)
