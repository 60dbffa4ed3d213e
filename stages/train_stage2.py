"""Stage train_stage2: the second-stage VAE on stage-1 latent codes (Dai & Wipf 2019)."""

import click
import torch

from pipeline.balance import build_balance
from pipeline.data import load_split
from pipeline.models import build_stage2, stage1_from_checkpoint
from pipeline.params import load_params, section
from pipeline.sampling import encode
from pipeline.tracking import StageRun
from pipeline.train import fit
from pipeline.utils import save_torch, write_csv, write_json
from stages.common import METRICS, PLOTS, PREPARED, STAGE2, VAE, load_checkpoint, params_option, setup, stage


@click.command(name="train-stage2")
@params_option
@stage
def main(params_path):
    """Fit the stage-2 dense VAE on the latent codes of the training images.

    The codes are fresh draws z = mu(x) + sigma(x) * eps from the stage-1 posteriors,
    a new eps every epoch. Writes models/stage2.pt, plots/train_stage2/history.csv
    and metrics/train_stage2.json; logs them to MLflow.
    """
    params = load_params(params_path)
    cfg = section(params, "stage2", ("width", "depth", "epochs", "batch_size", "lr", "seed", "balance"))
    device = setup(cfg["seed"])
    ckpt = load_checkpoint(VAE, "stage-1 model")
    vae = stage1_from_checkpoint(ckpt).to(device)
    mu, logvar = encode(vae, load_split(PREPARED / "train.pt").images)
    sigma = torch.exp(0.5 * logvar)

    def fresh_codes(epoch):
        return mu + sigma * torch.randn(mu.shape).to(device)

    model = build_stage2(cfg, mu.shape[1]).to(device)
    balance = build_balance(cfg["balance"], "stage2.balance").to(device)
    with StageRun("train_stage2", params) as run:
        run.log_params({"stage2": cfg})
        history = fit(
            model, balance, fresh_codes, epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
            desc="train_stage2",
            on_epoch=lambda row, timing: run.log_metrics({k: v for k, v in row.items() if k != "epoch"} | timing, row["epoch"]),
        )  # fmt: skip
        config = {"width": cfg["width"], "depth": cfg["depth"], "latent_dim": mu.shape[1]}
        save_torch(
            {"config": config, "state_dict": model.cpu().state_dict(), "balance": balance.cpu().state_dict(),
             "gamma": balance.gamma},
            STAGE2,
        )  # fmt: skip
        write_csv(history, PLOTS / "train_stage2" / "history.csv")
        metrics = {f"final_{k}": v for k, v in history[-1].items() if k != "epoch"}
        write_json(metrics, METRICS / "train_stage2.json")
        run.log_artifact(STAGE2, "model")
        run.log_artifact(PLOTS / "train_stage2" / "history.csv")
        click.echo(f"stage 2 final gamma {history[-1]['gamma']:.4g}, kl {history[-1]['kl']:.4g}")


if __name__ == "__main__":
    main()
