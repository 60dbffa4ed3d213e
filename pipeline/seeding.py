"""Seeding: the same seed gives the same run."""

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, device: torch.device) -> None:
    """Seed Python, NumPy and torch. On CUDA also ask for deterministic kernels (CPU
    kernels already are; the switch costs seconds of import time, so CPU skips it)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
