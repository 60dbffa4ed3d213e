"""Running a stage: threads, seeds and device; reading its input checkpoints."""

import os
from pathlib import Path

import click
import torch

from pipeline import PipelineError
from pipeline.speed import available_cpus, pick_device, set_cpu_threads
from pipeline.timing import timed
from pipeline.utils import seed_everything


def setup(seed: int) -> torch.device:
    """Threads, seeds and device for a stage (this rank's, under torchrun); prints the device."""
    from pipeline import distributed

    if "LOCAL_WORLD_SIZE" in os.environ and "BVAE_THREADS" not in os.environ:  # share the CPUs between ranks
        os.environ["BVAE_THREADS"] = str(max(1, available_cpus() // int(os.environ["LOCAL_WORLD_SIZE"])))
    set_cpu_threads()
    device = distributed.init(pick_device())
    seed_everything(seed, device)
    rank, size = distributed.world()
    click.echo(f"device: {device} ({torch.get_num_threads()} CPU threads)" + (f", rank {rank} of {size}" if size > 1 else ""))
    return device


@timed("io")
def load_checkpoint(path: Path, what: str) -> dict:
    if not path.is_file():
        raise PipelineError(f"{what} not found at {path}: run the earlier stages first (dvc repro)")
    return torch.load(path, map_location="cpu", weights_only=True)
