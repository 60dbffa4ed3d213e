"""What both training stages share: the resumable checkpoint and train-and-record."""

from pathlib import Path

import click

from pipeline import Diverged
from pipeline.hardware.device import Speed
from stages.layout import CHECKPOINTS, PLOTS


class StageCheckpoint:
    """The resumable state of a training stage in checkpoints/<name>.pt (not a DVC output:
    DVC would delete it before re-running the stage). Found again only for the same params
    section, thread plan (``threads``, the count it gave, the processes), input files and code (the
    stage's code deps, :mod:`stages.code_deps`). Kept after the last epoch, until the next
    stage starts (:func:`stages.runtime.drop_checkpoint`; DVC has recorded this one by then):
    a rerun before that, after an interrupt at any moment of the stage's end, writes the same
    outputs again from it without training."""

    def __init__(self, name: str, cfg: dict, threads, inputs: list[Path]):
        import torch

        from pipeline.training import checkpoint, distributed
        from stages.code_deps import code_hash

        self.path = CHECKPOINTS / f"{name}.pt"
        # the thread count and the number of processes (torchrun) change the arithmetic
        plan = {"threads": [threads, torch.get_num_threads()], "processes": distributed.world()[1]}
        self.ident = checkpoint.identity(cfg | plan, inputs, code_hash(name))
        self.found = checkpoint.load(self.path, self.ident)
        self.epoch = self.found["training"]["epoch"] if self.found else 0
        self.run_id = self.found.get("run_id") if self.found else None
        if self.found:
            click.echo(f"{name}: resuming from {self.path} after epoch {self.epoch}")

    def save(self, training: dict, **extra) -> None:
        from pipeline.training import checkpoint, distributed

        if not distributed.is_main():
            return
        checkpoint.save(self.path, self.ident, {"training": training, **extra})
        self.epoch = training["epoch"]


def train_and_record(
    run, ckpt: StageCheckpoint, name: str, model, balance, epoch_data, cfg: dict, diag_x, on_epoch=None, adaptive=None
) -> tuple[list[dict], Speed]:
    """Train a VAE stage (resuming from ``ckpt`` when it holds a checkpoint) and record it:
    per-epoch metrics to MLflow (sent before each checkpoint), checkpoints paced by
    ``cfg["checkpoint_every"]`` and diagnostics by ``cfg["diag_every"]`` (epochs, or seconds
    "Ns"), and under plots/<name>/ the training values of every epoch (history.csv), the
    diagnostics of the epochs that ran them (diagnostics.csv), their per-dimension latent
    statistics (latents.csv) and those of the last epoch (latents_final.csv, latents.png).
    ``adaptive``: ``threads: adaptive``'s count, measured again between steps. Returns the history and the :class:`Speed` settings it ran with; the caller writes
    metrics/<name>.json (:func:`final_metrics`, :func:`write_metrics`)."""

    from pipeline.files import write_csv
    from pipeline.training import distributed
    from pipeline.training.diagnostics import latent_rows, stack_latents, unstack_latents
    from pipeline.training.loop import STEP_KEYS, Settings, fit

    latents = []  # (epoch, per-dimension statistics) of every epoch with diagnostics
    if ckpt.found:
        latents = list(zip(ckpt.found["latent_epochs"], unstack_latents(ckpt.found["latents"])))

    def record(row, timing, latent):
        run.log_epoch({k: v for k, v in row.items() if k != "epoch"} | timing, step=row["epoch"])
        if latent is not None:
            latents.append((row["epoch"], latent))
        if on_epoch is not None:
            on_epoch(row)

    def save(state):
        run.flush()  # the store holds every epoch the checkpoint holds
        kept = [(e, s) for e, s in latents if e <= state["epoch"]]
        ckpt.save(
            state, run_id=run.run_id, latent_epochs=[e for e, _ in kept], latents=stack_latents([s for _, s in kept])
        )

    device = next(model.parameters()).device
    speed = Speed.resolve(cfg.get("precision", "fp32"), cfg.get("compile", False), device, diag_x.dim() == 4)
    if device.type == "cpu":
        import torch

        speed = speed.with_kernels(model, diag_x[: cfg["batch_size"]])
        run.set_tags({"bvae.threads": torch.get_num_threads(), "bvae.kernels": speed.kernels})
    click.echo(f"{name}: {speed.describe()} on {device}")
    try:
        history = fit(
            model,
            balance,
            epoch_data,
            Settings.from_section(cfg, name, speed, adaptive),
            diag_x=diag_x,
            on_epoch=record,
            resume=ckpt.found and ckpt.found["training"],
            on_checkpoint=save,
        )
    except Diverged as e:
        last = f"the last good checkpoint is {ckpt.path} (epoch {ckpt.epoch})" if ckpt.epoch else "no checkpoint yet"
        raise Diverged(
            f"{e}; {last}. Nothing was written: lower the learning rate or change the balance params, then dvc repro"
        ) from None
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM (pipeline.interrupts.Terminated): the same class again
        raise type(e)(f"{name} stopped; {ckpt.path} holds epoch {ckpt.epoch}: dvc repro resumes") from None
    if not distributed.is_main():
        return history, speed
    from pipeline.reports.plots import latent_figure  # matplotlib: imported once the training is done

    out = PLOTS / name
    write_csv([{k: row[k] for k in ("epoch", *STEP_KEYS)} for row in history], out / "history.csv")
    write_csv(
        [{k: v for k, v in row.items() if k not in STEP_KEYS} for row in history if len(row) > 1 + len(STEP_KEYS)],
        out / "diagnostics.csv",
    )
    write_csv([r for epoch, stats in latents for r in latent_rows(stats, epoch)], out / "latents.csv")
    write_csv(latent_rows(latents[-1][1]), out / "latents_final.csv")
    latent_figure(latents[-1][1], out / "latents.png", f"{name}: latent dimensions after epoch {cfg['epochs']}")
    for f in ("history.csv", "diagnostics.csv", "latents.csv", "latents.png"):
        run.log_artifact(out / f, "diagnostics")
    return history, speed


HEADLINE = (
    "final_gamma",
    "final_beta_eff",
    "final_mse",
    "final_kl",
    "final_active_units",
    "final_kl_grad_share",
    "test_mse",
    "bf16_autocast",
)


def final_metrics(history: list[dict], speed: Speed) -> dict:
    """The last epoch's values (it always runs the diagnostics) as metrics: final_loss, final_gamma, ...;
    ``bf16_autocast`` (1: the steps ran in bf16, which only CPUs and GPUs with native bf16 do
    under ``precision: auto``, so the numbers differ from an fp32 machine's); and on a CPU
    ``kernels``, the :func:`pipeline.hardware.device.kernels_fingerprint` of the step on this machine
    (a machine with another one cannot reproduce these numbers byte for byte)."""
    return (
        {f"final_{k}": v for k, v in history[-1].items() if k != "epoch"}
        | {"bf16_autocast": float(speed.bf16)}
        | ({"kernels": speed.kernels} if speed.kernels else {})
    )
