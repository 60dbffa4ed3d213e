"""Small helpers: seeding, atomic writes, CSV/JSON, progress bars, image grids."""

import json
import os
import random
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

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


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; outputs get the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@timed("io")
def save_torch(obj, path) -> None:
    with atomic_path(path) as tmp:
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


def progress(iterable=None, **kwargs):
    """A tqdm progress bar; redrawn at most every 30 s when output is not a terminal (logs)."""
    import sys

    from tqdm.auto import tqdm

    kwargs.setdefault("mininterval", 0.1 if sys.stderr.isatty() else 30)
    return tqdm(iterable, dynamic_ncols=True, **kwargs)


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


@timed("io")
def save_grid(images: torch.Tensor, path, nrow: int = 8):
    """Save uint8 images (N, C, H, W) as one PNG grid; returns the grid as a PIL image."""
    from PIL import Image

    grid = make_grid(images.cpu(), nrow=nrow)
    img = Image.fromarray(grid[0].numpy() if grid.shape[0] == 1 else grid.permute(1, 2, 0).numpy())
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return img
