"""Decoding image files: in a process pool when there are many, unreadable ones skipped and named."""

import os
from functools import partial
from pathlib import Path

import numpy as np
import torch

from pipeline import PipelineError

PARALLEL_MIN = 500  # decode in a process pool when there are more image files than this


SHOW = 10  # names listed in messages about unreadable images


def decode_all(paths: list[Path], decode, root: Path, desc: str):
    """Decode every file with ``decode`` (in a process pool, in order, when there are more than
    PARALLEL_MIN); returns the arrays (None where unreadable) and the (path relative to ``root``,
    reason) of the unreadable ones."""
    from pipeline.progress import progress

    work = partial(_try_decode, decode)
    if len(paths) > PARALLEL_MIN:
        import multiprocessing

        from pipeline.hardware.threads import available_cpus

        workers = available_cpus()
        with multiprocessing.Pool(workers) as pool:
            chunk = max(1, min(64, len(paths) // (4 * workers)))
            results = list(progress(pool.imap(work, paths, chunksize=chunk), total=len(paths), desc=desc, unit="img"))
    else:
        results = [work(p) for p in progress(paths, desc=desc, unit="img")]
    skipped = [(os.path.relpath(p, root), reason) for p, (_, reason) in zip(paths, results) if reason]
    return [array for array, _ in results], skipped


def _try_decode(decode, path: Path) -> tuple[np.ndarray | None, str | None]:
    try:
        return decode(path), None
    except Exception as e:  # whatever a broken file makes Pillow raise
        return None, " ".join(f"{type(e).__name__}: {e}".split())[:200]


def stack(arrays: list[np.ndarray], channels: int, size: int) -> torch.Tensor:
    """(C, H, W) uint8 arrays as one (N, channels, H, W) tensor; grey ones repeated to RGB."""
    if not arrays:
        return torch.zeros((0, channels, size, size), dtype=torch.uint8)
    return torch.from_numpy(np.stack([np.repeat(a, channels // a.shape[0], axis=0) for a in arrays]))


def describe_skipped(skipped: list[tuple[str, str]]) -> str:
    """'N unreadable image(s): a.png (reason), ... and M more' (the first SHOW of them)."""
    shown = ", ".join(f"{path} ({reason})" for path, reason in skipped[:SHOW])
    more = f" and {len(skipped) - SHOW} more" if len(skipped) > SHOW else ""
    return f"{len(skipped)} unreadable image(s): {shown}{more}"


def check_bad(skipped: list[tuple[str, str]], bad_images: str) -> None:
    if skipped and bad_images == "fail":
        raise PipelineError(f"{describe_skipped(skipped)}. Fix or remove them, or set prepare.bad_images: skip")
