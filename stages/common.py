"""What every stage shares: the output layout, the --params option, error handling."""

import functools
import sys
from pathlib import Path

import click
import torch

from pipeline import PipelineError
from pipeline.utils import pick_device, seed_everything, set_cpu_threads

# The output layout (mirrors dvc.yaml).
PREPARED = Path("data/prepared")
CLASSIFIER = Path("models/classifier.pt")
REFERENCE = Path("reference/real_stats.pt")
VAE = Path("models/vae.pt")
STAGE2 = Path("models/stage2.pt")
METRICS = Path("metrics")
PLOTS = Path("plots")

params_option = click.option(
    "--params",
    "params_path",
    type=click.Path(dir_okay=False),
    default="params.yaml",
    show_default=True,
    help="Params file to read (DVC tracks params.yaml).",
)


def stage(fn):
    """Run a stage body: user errors print one line and exit 2; Ctrl-C exits 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PipelineError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


def setup(seed: int) -> torch.device:
    """Threads, seeds and device for a stage; prints the device."""
    set_cpu_threads()
    device = pick_device()
    seed_everything(seed, device)
    click.echo(f"device: {device} ({torch.get_num_threads()} CPU threads)")
    return device


def load_checkpoint(path: Path, what: str) -> dict:
    if not path.is_file():
        raise PipelineError(f"{what} not found at {path}: run the earlier stages first (dvc repro)")
    return torch.load(path, map_location="cpu", weights_only=True)
