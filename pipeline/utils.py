"""Small helpers: seeding, atomic writes, CSV/JSON, progress bars, image grids."""

import errno
import json
import os
import random
import re
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pipeline import DiskFull
from pipeline.timing import timed


def seed_everything(seed: int, device: torch.device) -> None:
    """Seed Python, NumPy and torch. On CUDA also ask for deterministic kernels (CPU
    kernels already are; the switch costs seconds of import time, so CPU skips it)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


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
    return DiskFull(f"cannot write {path}: its file system is full ({free / 1e6:.1f} MB free; the file needs more than "
                    f"the {written / 1e6:.1f} MB written when it filled). Free some space, then run `dvc repro` again "
                    "(a training stage resumes from its last checkpoint)")  # fmt: skip


@timed("io")
def save_torch(obj, path, output: bool = True) -> None:
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


LOG_INTERVAL = 30.0  # seconds between the lines a progress bar writes to a log file


def progress(iterable=None, **kwargs):
    """A tqdm progress bar. On a terminal it redraws in place. In a log file (stderr not a
    terminal) it writes plain lines: one when it starts, then at most one every
    LOG_INTERVAL s, and one when done; no carriage returns or cursor moves. Short inner
    bars (``leave=False``) write nothing unless they run longer than LOG_INTERVAL."""
    if sys.stderr.isatty():
        return tqdm(iterable, dynamic_ncols=True, mininterval=0.1, **kwargs)
    if not kwargs.get("leave", True):
        kwargs.setdefault("delay", LOG_INTERVAL)
    return _LogBar(iterable, file=_Lines(sys.stderr), mininterval=LOG_INTERVAL, ncols=100, **kwargs)


class _Lines:
    """The file a log-file progress bar writes to: each redraw becomes one plain line."""

    CONTROL = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        for line in re.split(r"[\r\n]", self.CONTROL.sub("", text)):
            if line.strip():
                self.stream.write(line.rstrip() + "\n")

    def flush(self) -> None:
        self.stream.flush()


class _LogBar(tqdm):
    """tqdm without a redraw on every ``set_postfix`` (the postfix shows in the next line)."""

    def set_postfix(self, ordered_dict=None, refresh=False, **kwargs):
        super().set_postfix(ordered_dict, refresh=False, **kwargs)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] (float) to uint8 [0, 255]."""
    return x.mul(255).round_().clamp_(0, 255).to(torch.uint8)


def make_grid(images: torch.Tensor, nrow: int = 8, pad: int = 1) -> torch.Tensor:
    """Tile uint8 images (N, C, H, W) into one (C, H', W') image, ``nrow`` per row, white gaps."""
    n, c, h, w = images.shape
    rows = -(-n // nrow)
    grid = torch.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), 255, dtype=torch.uint8)
    for i, img in enumerate(images):
        r, k = divmod(i, nrow)
        grid[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = img
    return grid


def save_pngs(images: torch.Tensor, folder) -> list[Path]:
    """Write uint8 images (N, C, H, W) as numbered PNG files 000000.png, ... (grey or RGB)."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images.cpu()):
        path = folder / f"{i:06d}.png"
        with atomic_path(path) as tmp:
            Image.fromarray(img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()).save(tmp, format="PNG")
        paths.append(path)
    return paths


GRID_MIN_WIDTH = 256  # px: grids of small images are enlarged (nearest neighbour) to at least this width


def grid_image(images: torch.Tensor, nrow: int = 8):
    """uint8 images (N, C, H, W) as one PIL image grid, enlarged by the smallest whole factor
    that makes it GRID_MIN_WIDTH px wide or more (8 x 8 digits: 73 px -> 292 px), each pixel
    a square block, so it reads in a browser."""
    from PIL import Image

    grid = make_grid(images.cpu(), nrow=nrow)
    img = Image.fromarray(grid[0].numpy() if grid.shape[0] == 1 else grid.permute(1, 2, 0).numpy())
    factor = -(-GRID_MIN_WIDTH // img.width)
    if factor > 1:
        img = img.resize((img.width * factor, img.height * factor), Image.NEAREST)
    return img


@timed("io")
def save_grid(images: torch.Tensor, path, nrow: int = 8):
    """Save uint8 images (N, C, H, W) as one PNG grid (:func:`grid_image`); returns the grid."""
    img = grid_image(images, nrow)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return img
