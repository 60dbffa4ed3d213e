"""What every stage shares: the output layout, the --params option, error handling."""

import functools
import sys
from pathlib import Path

import click
import torch

from pipeline import PipelineError
from pipeline.speed import Speed, pick_device, set_cpu_threads
from pipeline.utils import seed_everything

# The output layout (mirrors dvc.yaml).
PREPARED = Path("data/prepared")
CLASSIFIER = Path("models/classifier.pt")
REFERENCE = Path("reference/real_stats.pt")
VAE = Path("models/vae.pt")
STAGE2 = Path("models/stage2.pt")
GMM = Path("models/gmm.pt")
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


def train_and_record(run, name: str, model, balance, epoch_data, cfg: dict, diag_x, on_epoch=None) -> list[dict]:
    """Train a VAE stage and record it: per-epoch metrics to MLflow, and under
    plots/<name>/ the history (history.csv), the per-dimension latent statistics of
    every epoch (latents.csv) and of the last (latents_final.csv, latents.png).
    Returns the history; the caller writes metrics/<name>.json (see final_metrics)."""
    from pipeline.diagnostics import latent_rows
    from pipeline.plots import latent_figure
    from pipeline.train import fit
    from pipeline.utils import write_csv

    latents = []  # per-dimension statistics of every epoch, the last one at the end

    def record(row, timing, latent):
        run.log_metrics({k: v for k, v in row.items() if k != "epoch"} | timing, step=row["epoch"])
        latents.append(latent)
        if on_epoch is not None:
            on_epoch(row)

    device = next(model.parameters()).device
    speed = Speed.resolve(cfg.get("precision", "fp32"), cfg.get("compile", False), device, diag_x.dim() == 4)
    click.echo(f"{name}: {speed.describe()} on {device}")
    history = fit(
        model, balance, epoch_data, epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"], desc=name,
        lr_halve_every=cfg.get("lr_halve_every"), speed=speed, diag_x=diag_x, on_epoch=record,
    )  # fmt: skip
    out = PLOTS / name
    write_csv(history, out / "history.csv")
    write_csv([r for epoch, stats in enumerate(latents, 1) for r in latent_rows(stats, epoch)], out / "latents.csv")
    write_csv(latent_rows(latents[-1]), out / "latents_final.csv")
    latent_figure(latents[-1], out / "latents.png", f"{name}: latent dimensions after epoch {cfg['epochs']}")
    for f in ("history.csv", "latents.csv", "latents.png"):
        run.log_artifact(out / f, "diagnostics")
    return history


def final_metrics(history: list[dict]) -> dict:
    """The last epoch's values as metrics: final_loss, final_gamma, ..."""
    return {f"final_{k}": v for k, v in history[-1].items() if k != "epoch"}


def load_checkpoint(path: Path, what: str) -> dict:
    if not path.is_file():
        raise PipelineError(f"{what} not found at {path}: run the earlier stages first (dvc repro)")
    return torch.load(path, map_location="cpu", weights_only=True)
