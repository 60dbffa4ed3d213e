"""What both training stages share: the resumable checkpoint and train-and-record."""

from pathlib import Path

import click

from pipeline import PipelineError
from pipeline.speed import Speed
from stages.layout import CHECKPOINTS, PLOTS


class StageCheckpoint:
    """The resumable state of a training stage in checkpoints/<name>.pt (not a DVC output:
    DVC would delete it before re-running the stage). Found again only for the same params
    section and input files; removed once the stage's outputs are written."""

    def __init__(self, name: str, cfg: dict, inputs: list[Path]):
        from pipeline import checkpoint

        self.path = CHECKPOINTS / f"{name}.pt"
        self.ident = checkpoint.identity(cfg, inputs)
        self.found = checkpoint.load(self.path, self.ident)
        self.epoch = self.found["training"]["epoch"] if self.found else 0
        self.run_id = self.found.get("run_id") if self.found else None
        if self.found:
            click.echo(f"{name}: resuming from {self.path} after epoch {self.epoch}")

    def save(self, training: dict, **extra) -> None:
        from pipeline import checkpoint, distributed

        if not distributed.is_main():
            return
        checkpoint.save(self.path, self.ident, {"training": training, **extra})
        self.epoch = training["epoch"]

    def done(self) -> None:
        from pipeline import distributed

        if distributed.is_main():
            self.path.unlink(missing_ok=True)


def train_and_record(run, ckpt: StageCheckpoint, name: str, model, balance, epoch_data, cfg: dict, diag_x,
                     on_epoch=None) -> list[dict]:  # fmt: skip
    """Train a VAE stage (resuming from ``ckpt`` when it holds a checkpoint) and record it:
    per-epoch metrics to MLflow (batched), checkpoints every ``cfg["checkpoint_every"]`` epochs
    or seconds, and
    under plots/<name>/ the history (history.csv), the per-dimension latent statistics of
    every epoch (latents.csv) and of the last (latents_final.csv, latents.png).
    Returns the history; the caller writes metrics/<name>.json (see final_metrics)."""
    from pipeline import distributed
    from pipeline.diagnostics import latent_rows, stack_latents, unstack_latents
    from pipeline.plots import latent_figure
    from pipeline.train import fit
    from pipeline.utils import write_csv

    latents = unstack_latents(ckpt.found["latents"]) if ckpt.found else []  # per-dimension statistics of every epoch

    def record(row, timing, latent):
        run.log_epoch({k: v for k, v in row.items() if k != "epoch"} | timing, step=row["epoch"])
        latents.append(latent)
        if on_epoch is not None:
            on_epoch(row)

    def save(state):
        run.flush()  # the store holds every epoch the checkpoint holds
        ckpt.save(state, run_id=run.run_id, latents=stack_latents(latents[: state["epoch"]]))

    device = next(model.parameters()).device
    speed = Speed.resolve(cfg.get("precision", "fp32"), cfg.get("compile", False), device, diag_x.dim() == 4)
    click.echo(f"{name}: {speed.describe()} on {device}")
    try:
        history = fit(
            model, balance, epoch_data, epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"], desc=name,
            lr_halve_every=cfg.get("lr_halve_every"), speed=speed, diag_x=diag_x, on_epoch=record,
            resume=ckpt.found and ckpt.found["training"], on_checkpoint=save,
            checkpoint_every=cfg.get("checkpoint_every", 1),
        )  # fmt: skip
    except PipelineError as e:
        last = f"the last good checkpoint is {ckpt.path} (epoch {ckpt.epoch})" if ckpt.epoch else "no checkpoint yet"
        raise PipelineError(f"{e}; {last}. Nothing was written: lower the learning rate or change the balance "
                            "params, then dvc repro") from None  # fmt: skip
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"{name} stopped; {ckpt.path} holds epoch {ckpt.epoch}: dvc repro resumes") from None
    if not distributed.is_main():
        return history
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
