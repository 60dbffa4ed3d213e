"""The device and how a training step runs on it: bf16 autocast, channels_last, compile.

- Device: CUDA when available, else CPU; ``BVAE_DEVICE=cpu|cuda|cuda:1`` overrides.
- ``precision: auto`` runs the model under bf16 autocast where the hardware computes
  in bf16 natively (CUDA with bf16, CPUs with AVX512-BF16 or AMX), fp32 elsewhere.
  Losses are always computed in fp32 on fp32 copies of the outputs.
- Image models train in channels_last memory format (faster convolutions on GPUs and
  with bf16 on CPUs, neutral otherwise).
- ``compile: true`` wraps the model in ``torch.compile`` (first steps slower while it compiles).
- :func:`kernels_fingerprint` tells whether two machines compute a training step bit for
  bit alike (the condition for reproducing each other's results byte for byte).
"""

import copy
import hashlib
import os
from dataclasses import dataclass, replace

import torch

from pipeline.config.choices import PRECISIONS


def pick_device() -> torch.device:
    """CUDA when available, else CPU; ``BVAE_DEVICE`` overrides."""
    name = os.environ.get("BVAE_DEVICE", "auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def bf16_native(device: torch.device) -> bool:
    """Does the device compute in bf16 natively (so autocast is a speed-up, not a slow-down)?"""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    # Not torch.ops.mkldnn._is_mkldnn_bf16_supported(): it says yes on any AVX-512 CPU, where oneDNN
    # emulates bf16 (measured on a 2-core AVX-512 Xeon without AVX512-BF16: train_vae of
    # docs/results.md's set-up several times slower under autocast than in fp32, docs/speed.md).
    return device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


@dataclass(frozen=True)
class Speed:
    """How the training step runs."""

    bf16: bool = False  # bf16 autocast of the model's forward pass
    channels_last: bool = False  # NHWC memory format for 4-d inputs
    compile: bool = False  # torch.compile the model
    kernels: str = ""  # kernels_fingerprint of the step on this machine (set by the training stage)

    @classmethod
    def resolve(cls, precision: str, compile: bool, device: torch.device, images: bool) -> "Speed":
        """The settings for ``precision`` (auto | fp32 | bf16) on ``device``; ``images``:
        the model takes 4-d image batches."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        bf16 = precision == "bf16" or (precision == "auto" and bf16_native(device))
        return cls(bf16=bf16, channels_last=images, compile=bool(compile))

    def with_kernels(self, model: torch.nn.Module, x: torch.Tensor) -> "Speed":
        """These settings with the :func:`kernels_fingerprint` of ``model``'s step on ``x``."""
        return replace(self, kernels=kernels_fingerprint(model, x, self))

    def describe(self) -> str:
        return ", ".join(
            [("bf16 autocast" if self.bf16 else "fp32")]
            + (["channels_last"] if self.channels_last else [])
            + (["torch.compile"] if self.compile else [])
        )


def kernels_fingerprint(model: torch.nn.Module, x: torch.Tensor, speed: Speed) -> str:
    """16 hex digits of sha256 over the gradients of one step of a copy of ``model`` on the
    batch ``x`` (uint8 images or float codes), with this process's threads, as the training
    loop runs it (bf16 autocast and channels_last as ``speed`` says) and once more in fp32.
    Two machines with the same fingerprint run these kernels bit for bit alike. Another
    fingerprint means another code path for this CPU in oneDNN or MKL (they choose kernels
    by vendor, model and instruction set): the two round differently from the first step,
    their trainings drift apart, and their results cannot match byte for byte. The model,
    its state and the RNG are left as they were."""
    h = hashlib.sha256()
    with torch.random.fork_rng(devices=[]):
        for bf16 in dict.fromkeys((speed.bf16, False)):
            torch.manual_seed(0)
            probe = copy.deepcopy(model).train()
            batch = x.float().div(255) if x.dtype == torch.uint8 else x.clone()
            if speed.channels_last and batch.dim() == 4:
                probe, batch = (
                    probe.to(memory_format=torch.channels_last),
                    batch.contiguous(memory_format=torch.channels_last),
                )
            with torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=bf16):
                outputs = probe(batch)
            sum(o.float().square().mean() for o in outputs).backward()
            for p in probe.parameters():
                h.update(p.grad.float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]
