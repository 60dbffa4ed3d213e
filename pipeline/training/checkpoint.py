"""Resumable training: the state of a training stage, saved atomically, and found again.

A checkpoint holds what the next epoch needs to run exactly as if nothing had stopped:
model, balance (e.g. the running-gamma estimate), optimiser and LR schedule states, the
epoch and step counters, the history so far, every RNG state, plus what the stage adds
(its MLflow run id, the latent statistics of the epochs with diagnostics). It is written to a temporary file and
renamed, so a kill at any moment leaves the previous checkpoint or the new one, never a
torn file.

A checkpoint belongs to one ``identity``: hashes of the stage's params section, of its
input files and of the code it runs. A checkpoint of other params, inputs or code is
ignored (and replaced), so neither an edit of params.yaml nor a code fix ever resumes
epochs that the stage would not train the same way now.
"""

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch

from pipeline.files import save_torch


def copy_tensors(src, into=None):
    """``src`` (nested dicts and lists of tensors and immutable values) with every tensor
    copied: into the matching tensor of ``into`` (an earlier copy of the same structure)
    where there is one, else into a new tensor. Values other than tensors are shared."""
    if isinstance(src, torch.Tensor):
        same = isinstance(into, torch.Tensor) and (into.shape, into.dtype, into.device) == (
            src.shape,
            src.dtype,
            src.device,
        )
        if same:
            return into.copy_(src)
        return src.detach().clone()
    if isinstance(src, dict):
        into = into if isinstance(into, dict) else {}
        return {k: copy_tensors(v, into.get(k)) for k, v in src.items()}
    if isinstance(src, list | tuple):
        into = into if isinstance(into, list | tuple) and len(into) == len(src) else [None] * len(src)
        return type(src)(copy_tensors(v, i) for v, i in zip(src, into))
    return src


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


FORMAT = 5  # bumped when the saved layout changes: a checkpoint of another format is ignored
WHAT = {
    "format": "in an older format",
    "params": "with other params",
    "inputs": "for other input files",
    "code": "by other code",
}  # what differs, in the message when a checkpoint is not resumed


def identity(params: dict, inputs: list[Path], code: str) -> dict:
    """What a checkpoint belongs to: the format, sha256 of the params and of the bytes of
    every input file, and ``code`` (a hash of the code the stage runs)."""
    h = hashlib.sha256()
    for path in inputs:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    params_hash = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
    return {"format": FORMAT, "params": params_hash, "inputs": h.hexdigest(), "code": code}


def save(path: Path, ident: dict, state: dict) -> None:
    save_torch({"identity": ident, **state}, path, output=False)  # kept when the stage fails: it resumes


def load(path: Path, ident: dict) -> dict | None:
    """The checkpoint at ``path`` if it belongs to ``ident``; None when absent, foreign or
    unreadable (saying why, in one line)."""
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a torn or foreign file: start afresh rather than fail
        print(f"checkpoint {path}: unreadable ({type(e).__name__}); starting from epoch 1")
        return None
    found = ckpt.get("identity") if isinstance(ckpt, dict) else None
    if found != ident:
        found = found if isinstance(found, dict) else {}
        differs = next(k for k in WHAT if found.get(k) != ident[k])
        print(f"checkpoint {path}: written {WHAT[differs]}; starting from epoch 1")
        return None
    return ckpt
