"""Stage train_stage2: the second-stage VAE on stage-1 latent codes (Dai & Wipf 2019)."""

import click

from stages.command import params_option, stage
from stages.layout import GMM, PREPARED, STAGE2, VAE


@click.command(name="train-stage2")
@params_option
@stage("train_stage2", "stage2", "threads")
def main(params, watch):
    """Fit the stage-2 dense VAE on the latent codes of the training images.

    The codes are fresh draws z = mu(x) + sigma(x) * eps from the stage-1 posteriors,
    a new eps every epoch. Also fits the Gaussian mixture sampler (`stage2.gmm`) on the
    posterior means and records the variance law's expected std per dimension,
    sqrt(Var(mu) + E[sigma^2]), for the rescale option. Writes models/stage2.pt,
    models/gmm.pt, plots/train_stage2/ (history, latent statistics) and
    metrics/train_stage2.json (every last-epoch value in metrics/all/); logs them to MLflow.
    """
    from stages.command import launch

    launch("stages.train_stage2")  # BVAE_NPROC=N: data-parallel on N processes

    from pipeline.config.params import section
    from pipeline.tracking.stage_run import StageRun

    run = StageRun("train_stage2", params, before_end=watch.finishing)

    import torch

    from pipeline import PipelineError
    from pipeline.balance import build_balance
    from pipeline.config import sizing
    from pipeline.evaluation.gmm import fit_gmm
    from pipeline.evaluation.sampling import encode, posterior_draws
    from pipeline.files import save_torch
    from pipeline.hardware.timing import part
    from pipeline.models import Reconstruct, build_stage2, stage1_from_checkpoint
    from pipeline.training import distributed
    from pipeline.training.diagnostics import OVERFIT, code_fit
    from stages import sizes
    from stages.runtime import drop_checkpoint, load_checkpoint, load_prepared, setup, write_metrics
    from stages.training import HEADLINE, StageCheckpoint, final_metrics, train_and_record

    cfg = section(
        params, "stage2", ("width", "depth", "epochs", "batch_size", "lr", "seed", "balance", "diag_size", "gmm")
    )
    device, adaptive = setup(cfg["seed"], params["threads"])
    vae = stage1_from_checkpoint(load_checkpoint(VAE, "stage-1 model")).to(device)
    images = load_prepared("train").images
    epochs, said = sizing.epochs(cfg["epochs"], "stage2", len(images), cfg["batch_size"])
    cfg = cfg | {"epochs": epochs}
    shape = sizes.Shape(len(images), 0, images.shape[1], images.shape[-1])
    for line in sizes.check_params(params, shape, device, ("stage2",), False, latent=vae.latent_dim):  # before encoding
        click.echo(f"train_stage2: {line}")
    if cfg["gmm"]["components"] > len(images):  # scikit-learn would fail after the whole training
        raise PipelineError(
            f"stage2.gmm.components: {cfg['gmm']['components']} is more than the {len(images):,} latent "
            f"codes the mixture is fitted on (one per training image); use at most {len(images):,}"
        )
    drop_checkpoint("train_vae")  # after the checks: a stage stopped by one removes nothing
    click.echo(f"train_stage2: {said}")
    with part("work"):
        mu, logvar = encode(vae, images)
    sigma = torch.exp(0.5 * logvar)
    fresh_codes = posterior_draws(mu, sigma)

    model = build_stage2(cfg, mu.shape[1]).to(device)
    balance = build_balance(cfg["balance"], "stage2.balance").to(device)
    ckpt = StageCheckpoint("train_stage2", cfg, params["threads"], [VAE, PREPARED / "train.pt"])
    with run.resuming(ckpt.run_id):
        run.log_params({"stage2": cfg, "threads": params["threads"]})
        diag_x = fresh_codes(0)[: cfg["diag_size"]]
        history, speed = train_and_record(
            run, ckpt, "train_stage2", model, balance, fresh_codes, cfg, diag_x, adaptive=adaptive
        )
        if not distributed.is_main():
            return
        config = {"width": cfg["width"], "depth": cfg["depth"], "latent_dim": mu.shape[1]}
        expected_std = (mu.var(0) + sigma.pow(2).mean(0)).sqrt().cpu()
        save_torch(
            {
                "config": config,
                "state_dict": model.cpu().state_dict(),
                "balance": balance.cpu().state_dict(),
                "gamma": balance.gamma,
                "expected_std": expected_std,
            },
            STAGE2,
        )
        gmm_cfg = cfg["gmm"]
        with part("work"):
            gmm = fit_gmm(mu.cpu(), gmm_cfg["components"], gmm_cfg["covariance"], cfg["seed"])
        save_torch(gmm, GMM)
        with part("work"):  # stage 2 on held-out codes (the test images'), and on as many training codes
            test_mu = encode(vae, load_prepared("test").images)[0].cpu()
            fits = {side: code_fit(model, z) for side, z in (("test", test_mu), ("train", mu[: len(test_mu)].cpu()))}
        codes = {f"codes_{side}_{k}": v for side, fit in fits.items() for k, v in fit.items()}
        write_metrics("train_stage2", final_metrics(history, speed) | codes, HEADLINE.__contains__)
        run.log_metrics(codes)
        run.log_artifact(STAGE2, "model")
        run.log_model(Reconstruct(model.cpu()), "stage2", mu[:4].cpu())
        run.log_artifact(GMM, "model")
        click.echo(
            f"stage 2 final gamma {history[-1]['gamma']:.4g}, kl {history[-1]['kl']:.4g}; its reconstruction's MSE "
            f"over the codes' variance: {codes['codes_test_rel_mse']:.3g} on the test images' codes (training "
            f"images' {codes['codes_train_rel_mse']:.3g})"
        )
        if codes["codes_test_rel_mse"] > OVERFIT * codes["codes_train_rel_mse"]:
            click.echo(
                f"train_stage2: stage 2 fits the codes it trained on over {OVERFIT}x better than new ones: it memorises "
                "them (judge stage2.epochs by GEN-2's FID, not this: docs/budget.md)"
            )


if __name__ == "__main__":
    main()
