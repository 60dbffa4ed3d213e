"""Stage train_vae: the first-stage VAE with the balanced loss of `train.balance`."""

import click

from stages.command import params_option, stage
from stages.layout import PLOTS, PREPARED, VAE


@click.command(name="train-vae")
@params_option
@stage("train_vae", "train", "threads")
def main(params, watch):
    """Train the stage-1 convolutional VAE on data/prepared/train.pt.

    Writes models/vae.pt; under plots/train_vae/ the per-epoch history (loss, rec, kl,
    mse, gamma, beta_eff, gradient norms, active units, variance law), the latent
    statistics per dimension and a reconstruction grid of test images; and
    metrics/train_vae.json (last epoch's gamma, beta_eff, MSE, KL, active units, the KL's
    share of the encoder gradient; test-set MSE), every last-epoch value in
    metrics/all/train_vae.json. Logs all of it to MLflow.
    """
    from stages.command import launch

    launch("stages.train_vae")  # BVAE_NPROC=N: data-parallel on N processes

    from pipeline.config.params import section
    from pipeline.tracking.stage_run import StageRun

    run = StageRun("train_vae", params, before_end=watch.finishing)

    from pipeline import PipelineError
    from pipeline.balance import build_balance
    from pipeline.config import sizing
    from pipeline.data.splits import grid_indices
    from pipeline.files import save_torch
    from pipeline.hardware.timing import part
    from pipeline.images import grid_image, save_grid
    from pipeline.models import Reconstruct, build_stage1
    from pipeline.training import distributed
    from pipeline.training.diagnostics import overfit_note
    from stages import sizes
    from stages.runtime import load_prepared, setup, write_metrics
    from stages.training import HEADLINE, StageCheckpoint, final_metrics, train_and_record

    cfg = section(params, "train", ("latent_dim", "epochs", "batch_size", "lr", "seed", "balance", "diag_size"))
    device, adaptive = setup(cfg["seed"], params["threads"])
    train, test = load_prepared("train"), load_prepared("test")
    channels, size = train.images.shape[1], train.images.shape[-1]
    latent, said = sizing.latent_dim(cfg["latent_dim"], channels, size)
    epochs, said_epochs = sizing.epochs(cfg["epochs"], "train", len(train), cfg["batch_size"])
    cfg = cfg | {"latent_dim": latent, "epochs": epochs}
    click.echo(f"train_vae: {cfg.get('model', {}).get('arch', 'conv')} VAE, {said}")
    shape = sizes.Shape(len(train.images), len(test.images), channels, size)
    try:
        for line in sizes.check_params(params, shape, device, ("train",), labelled=False):  # before any work
            click.echo(f"train_vae: {line}")
        model = build_stage1(cfg, channels, size).to(device)
    except ValueError as e:
        raise PipelineError(f"train.model: {e}") from None
    click.echo(f"train_vae: {said_epochs}")  # after the checks: a run they stop prints nothing of its work
    balance = build_balance(cfg["balance"], "train.balance").to(device)
    images = train.images.to(device)
    grid_every = cfg.get("grid_every") or 0
    grid_images = test.images[grid_indices(test.labels, 64, cfg["seed"])]  # a seeded sample across the classes
    grid_path = PLOTS / "train_vae" / "reconstructions.png"

    ckpt = StageCheckpoint("train_vae", cfg, params["threads"], [PREPARED / "train.pt"])
    with run.resuming(ckpt.run_id):
        run.log_params({"train": cfg, "threads": params["threads"]})

        def log_grid(row):  # after the first epoch (where the UI's step slider starts), every grid_every, the last
            if grid_every and (row["epoch"] % grid_every == 0 or row["epoch"] in (1, cfg["epochs"])):
                with part("diagnostics"):
                    grid = grid_image(_pairs(model, grid_images), nrow=min(8, len(grid_images)))
                run.log_grid(grid, "reconstructions", step=row["epoch"])

        history, speed = train_and_record(
            run,
            ckpt,
            "train_vae",
            model,
            balance,
            lambda epoch: images,
            cfg,
            images[: cfg["diag_size"]],
            log_grid,
            adaptive,
        )
        if not distributed.is_main():
            return
        model_cfg = {
            "channels": channels,
            "image_size": size,
            "latent_dim": cfg["latent_dim"],
            "model": cfg.get("model", {}),
        }
        save_torch(
            {
                "config": model_cfg,
                "state_dict": model.cpu().state_dict(),
                "balance": balance.cpu().state_dict(),
                "gamma": balance.gamma,
            },
            VAE,
        )
        model.to(device)
        save_grid(
            _pairs(model, grid_images), grid_path, nrow=min(8, len(grid_images))
        )  # also after a resume at the end
        with part("work"):  # REC's per-value MSE on the test images, and on as many training images
            test_mse, train_mse = (_rec_mse(model, x) for x in (test.images, train.images[: len(test.images)]))
        metrics = final_metrics(history, speed) | {"test_mse": test_mse, "train_mse": train_mse}
        write_metrics("train_vae", metrics, HEADLINE.__contains__)
        run.log_metrics({"test_mse": test_mse, "train_mse": train_mse})
        run.log_artifact(VAE, "model")
        run.log_model(Reconstruct(model.cpu()), "vae", grid_images[:4].float() / 255)
        click.echo(
            f"final gamma {metrics['final_gamma']:.4g}, beta_eff {metrics['final_beta_eff']:.3g}, "
            f"active units {metrics['final_active_units']:.0f}/{latent}, test mse {test_mse:.4g} (training images {train_mse:.4g})"
        )
        if warning := sizing.too_small(latent, channels, size):
            click.echo(f"train_vae: {warning}")
        if note := overfit_note(test_mse, train_mse):
            click.echo(f"train_vae: {note}")


def _rec_mse(model, images) -> float:
    """The per-value MSE of REC (decoded posterior means, as uint8) against ``images``, in [0, 1]."""
    from pipeline.evaluation.sampling import reconstruct

    return float((reconstruct(model, images).float() / 255 - images.float() / 255).pow(2).mean())


def _pairs(model, images, ncol: int = 8):
    """Rows of real test images, each followed by a row of their reconstructions."""
    import torch

    from pipeline.evaluation.sampling import reconstruct

    ncol = min(ncol, len(images))
    images = images[: len(images) // ncol * ncol]
    rec = reconstruct(model, images)
    return torch.stack([images.unflatten(0, (-1, ncol)), rec.unflatten(0, (-1, ncol))], 1).flatten(0, 2)


if __name__ == "__main__":
    main()
