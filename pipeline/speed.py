"""Where and how fast training runs: device, CPU threads, bf16 autocast, channels_last, compile.

- Device: CUDA when available, else CPU; ``BVAE_DEVICE=cpu|cuda|cuda:1`` overrides.
- Threads: one intra-op thread per CPU this process may use (its affinity mask and
  cgroup quota, not the host's core count); ``BVAE_THREADS`` overrides.
- ``precision: auto`` runs the model under bf16 autocast where the hardware computes
  in bf16 natively (CUDA with bf16, CPUs with AVX512-BF16 or AMX), fp32 elsewhere.
  Losses are always computed in fp32 on fp32 copies of the outputs.
- Image models train in channels_last memory format (faster convolutions on GPUs and
  with bf16 on CPUs, neutral otherwise).
- ``compile: true`` wraps the model in ``torch.compile`` (first steps slower while it compiles).
"""

import os
from dataclasses import dataclass
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def pick_device() -> torch.device:
    """CUDA when available, else CPU; ``BVAE_DEVICE`` overrides."""
    name = os.environ.get("BVAE_DEVICE", "auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (containers)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            n = min(n, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return n


def set_cpu_threads() -> None:
    """One intra-op thread per usable CPU (``BVAE_THREADS`` overrides)."""
    torch.set_num_threads(max(1, int(os.environ.get("BVAE_THREADS", available_cpus()))))


def bf16_native(device: torch.device) -> bool:
    """Does the device compute in bf16 natively (so autocast is a speed-up, not a slow-down)?"""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


@dataclass(frozen=True)
class Speed:
    """How the training step runs."""

    bf16: bool = False  # bf16 autocast of the model's forward pass
    channels_last: bool = False  # NHWC memory format for 4-d inputs
    compile: bool = False  # torch.compile the model

    @classmethod
    def resolve(cls, precision: str, compile: bool, device: torch.device, images: bool) -> "Speed":
        """The settings for ``precision`` (auto | fp32 | bf16) on ``device``; ``images``:
        the model takes 4-d image batches."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        bf16 = precision == "bf16" or (precision == "auto" and bf16_native(device))
        return cls(bf16=bf16, channels_last=images, compile=bool(compile))

    def describe(self) -> str:
        return ", ".join(
            [("bf16 autocast" if self.bf16 else "fp32")]
            + (["channels_last"] if self.channels_last else [])
            + (["torch.compile"] if self.compile else [])
        )
