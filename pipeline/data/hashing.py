"""Hashes that identify data: of prepared tensors, and of raw files."""

import hashlib
import os
from pathlib import Path

import torch


def checksum(*tensors: torch.Tensor) -> str:
    """sha256 over the raw bytes of tensors: identifies the exact prepared data."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def content_hash(files, root) -> str:
    """sha256 identifying raw files: for each file, in sorted order of its path relative to
    ``root``, that path (posix, UTF-8), a NUL byte and the sha256 of its bytes."""
    h = hashlib.sha256()
    for rel, path in sorted((Path(os.path.relpath(f, root)).as_posix(), f) for f in files):
        h.update(rel.encode() + b"\0")
        with open(path, "rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()
