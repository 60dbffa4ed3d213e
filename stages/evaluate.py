"""Stage evaluate: REC and every sampler against the real test images."""

import time

import click

from stages.command import params_option, stage
from stages.layout import CLASSIFIER, GMM, METRICS, PLOTS, PREPARED, REFERENCE, STAGE2, VAE

HEADLINE_NLL = (
    "bpd_iwae_stage1_gamma_trained",
    "bpd_iwae_stage1_gamma_test",
    "bpd_iwae_twostage_gamma_test",
    "bpd_iwae_stage1_gamma_iwae",
    "bpd_iwae_twostage_gamma_iwae",
    "gamma_test",
    "gamma_iwae_stage1",
)  # with the FIDs; gamma_test^2 (the test MSE) and D (the param data_dim) turn beta_eff into a variance
HEADLINE_STAGE1 = (
    "final_gamma",
    "final_beta_eff",
    "final_active_units",
    "final_kl_grad_share",
)  # also on the parent run


@click.command(name="evaluate")
@params_option
@stage
def main(params_path):
    """Score the two-stage model on held-out test images.

    `evaluate.protocol` says which image sets are scored and how. clean (default):
    REC (test images decoded from their posterior means) and the samplers of
    `evaluate.samplers`: gen1 (z ~ N(0, I), GEN-1), gen2 (through the second stage,
    GEN-2), gen2_noise (GEN-2 plus gamma_z noise), gmm (a Gaussian mixture on the
    latent codes), with `evaluate.rescale` also gen2_rescaled (variance-law rescale),
    `evaluate.num_samples` each, as they are. dai_wipf and asperti: REC, GEN-1 and
    GEN-2 exactly as that reference's code makes and preprocesses them (posterior-draw
    REC, min-max or adjust, gamma_z noise or the conditional latent rescale, 10,000 of
    each; pipeline/evaluation/protocols/). Each set is compared with the cached real
    test features (reference/real_stats.pt) by FID, KID and precision/recall in the
    feature space `reference.features`; metric names say both: fid_domain_gen2,
    kid_mean_inception-dai_wipf_rec, ...

    Likelihood of the test images (`evaluate.nll_samples` importance samples, 0: off):
    negative ELBO and IWAE bound in nats per image and bits/dim, for stage 1 and the
    two-stage model, at the trained decoder variance, at gamma_test (gamma^2 = the test
    MSE, the ELBO's optimum) and at each model's IWAE-optimal gamma
    (nll_iwae_twostage_gamma_test, bpd_elbo_stage1_gamma_trained, bpd_iwae_stage1_gamma_iwae, ...).

    Writes metrics/evaluate.json and PNG grids in plots/evaluate/. The parent MLflow run
    gets these (GEN-2 FID first), the grids at its artifact root (samples_gen2.png, ...),
    the final metrics of the earlier stages, the dataset as its input and the data
    dimension D as the param data_dim; the two-stage generator (u -> images) is logged as
    an MLflow model, an output of the parent too, and registered as `evaluate.register.name`
    with alias `evaluate.register.alias`.
    """
    from pipeline.config.params import load_params, section

    params = load_params(params_path)  # checked before torch is imported: a bad key fails at once

    import torch  # before the tracking process is forked: it has torch without importing it

    from pipeline.tracking.stage_run import StageRun
    from stages.command import params_unchanged

    run = StageRun("evaluate", params, models=True, before_end=params_unchanged)  # a forked copy: MLflow starts beside

    from pipeline import PipelineError
    from pipeline.config.choices import feature_space
    from pipeline.data.splits import grid_indices
    from pipeline.evaluation import likelihood, protocols
    from pipeline.evaluation.features import (
        build_feature_space,
        fidelity_metrics,
        resolve_inception_weights,
        statistics,
    )
    from pipeline.files import read_json
    from pipeline.hardware.threads import Threads, cpu_share
    from pipeline.hardware.timing import part
    from pipeline.images import save_grid
    from pipeline.models import Generator, stage1_from_checkpoint, stage2_from_checkpoint
    from stages.runtime import load_checkpoint, load_prepared, setup, write_metrics

    cfg = section(
        params,
        "evaluate",
        (
            "num_samples",
            "samplers",
            "rescale",
            "batch_size",
            "grid_rows",
            "seed",
            "protocol",
            "nll_samples",
            "nll_prior_samples",
        ),
    )
    ref = section(params, "reference", ("features",))
    reg = cfg.get("register") or {}
    if not (PREPARED / "meta.json").is_file():
        raise PipelineError(f"{PREPARED / 'meta.json'} not found: run the prepare stage first (dvc repro)")
    data = read_json(PREPARED / "meta.json")
    labelled = data.get("num_classes", 0) >= 2
    features = feature_space(ref["features"], labelled)
    if features == "inception":
        resolve_inception_weights(ref.get("inception_weights"), labelled)
    device = setup(cfg["seed"])
    reference = load_checkpoint(REFERENCE, "real-image statistics")
    if reference["space"] != features:
        raise PipelineError(
            f"{REFERENCE} holds {reference['space']} features but reference.features is {ref['features']} "
            f"({features} for this data): run `dvc repro` (it recomputes the reference stage)"
        )
    floor = reference.get("floor")  # FID of real training images against the test images
    v = load_checkpoint(VAE, "stage-1 model")
    if "gamma" not in v:
        raise PipelineError(f"{VAE} predates the likelihood evaluation (it holds no gamma): dvc repro -f train_vae")
    vae = stage1_from_checkpoint(v).to(device)
    s2 = load_checkpoint(STAGE2, "stage-2 model")
    stage2 = stage2_from_checkpoint(s2).to(device)
    gmm = load_checkpoint(GMM, "Gaussian mixture")
    test = load_prepared("test")
    bs, seed = cfg["batch_size"], cfg["seed"]
    with run:
        run.log_params({"evaluate": cfg})
        run.log_parent_params({"data_dim": test.images[0].numel()})  # D: turns beta_eff into a variance
        run.log_input(data["dataset"], data["source"], data["raw_sha256"], parent=True)
        space = build_feature_space(
            features, classifier_path=CLASSIFIER, inception_weights=ref.get("inception_weights"), device=device
        )
        ctx = protocols.Context(
            vae=vae,
            stage2=stage2,
            gamma_z=s2["gamma"],
            gmm=gmm,
            expected_std=s2["expected_std"],
            test=test.images,
            samplers=list(cfg["samplers"]),
            num_samples=cfg["num_samples"],
            rescale=cfg["rescale"],
            batch_size=bs,
            seed=seed,
        )
        with part("work"):
            proto = protocols.build(cfg["protocol"], ctx)  # asperti: encodes the test set for its rescale
        if proto.kept(len(proto.real_rows)) < 2:
            raise PipelineError(
                f"evaluate.protocol: {proto.name} scores whole batches of {proto.feature_batch} images, as its "
                f"reference's feature code does: {len(test)} test images leave {proto.kept(len(proto.real_rows))}. "
                "Use more test images (prepare.limit_test) or evaluate.protocol: clean"
            )
        space_name = protocols.space_name(space.name, proto.name)
        total = len(proto.rec_rows) + proto.count * (len(proto.sets) - 1)
        threads = Threads(cpu_share()) if device.type == "cpu" else None
        with part("work"):  # the feature network's first pass, its one-time set-up included
            rate = space.throughput(test.images[:64])
        click.echo(
            f"evaluate: {total:,} images ({', '.join(proto.sets)}) through the {space.name} feature network "
            f"on {device}: about {total / rate:.0f} s at {rate:.0f} images/s"
        )
        for note in proto.notes():
            click.echo(f"evaluate: {note}")

        real_features = reference["features"][proto.real_rows[: proto.kept(len(proto.real_rows))]]
        with part("work"):  # FID statistics (torch-fidelity's import, about 1 s, comes with the first)
            real_stats = statistics(real_features)
        k = cfg["grid_rows"]
        rec_rows = proto.rec_rows
        shown_at = grid_indices(test.labels[rec_rows], k * k, seed)  # positions in REC's images
        shown = rec_rows[shown_at]  # the real grid and the REC grid: the same test images
        grid = save_grid(test.images[shown], PLOTS / "evaluate" / "real.png", nrow=k)
        run.log_grid(grid, "samples_real")
        run.log_grid(grid, "samples_real", parent=True)
        metrics, timing = proto.metrics(), {}
        click.echo(
            "KID: the unbiased MMD^2 of torch-fidelity (its units: not scaled), mean +- std over 100 random "
            "subsets of the size shown"
        )
        if floor is not None:
            click.echo(f"FID floor (real training against test images, {space.name} features): {floor:.4g}")
        for name in proto.sets:
            if threads is not None and (note := threads.tick()):
                click.echo(f"evaluate: {note}")
            t0 = time.perf_counter()
            with part("work"):
                images = proto.images(name)
                scored = images[: proto.kept(len(images))]
                values = fidelity_metrics(space.extract(scored, name), real_features, real_stats, seed)
            grid = save_grid(
                images[shown_at] if name == "rec" else images[: k * k], PLOTS / "evaluate" / f"{name}.png", nrow=k
            )
            run.log_grid(grid, f"samples_{name}")
            run.log_grid(grid, f"samples_{name}", parent=True)
            metrics |= {f"{m}_{space_name}_{name}": v for m, v in values.items()}
            timing[f"eval_seconds_{name}"] = time.perf_counter() - t0
            click.echo(
                f"{name:14s} FID {values['fid']:8.3f}{_over(values['fid'], floor)}  KID {values['kid_mean']:9.3g} +- {values['kid_std']:8.3g} "
                f"(subsets of {values['kid_subset_size']})  "
                f"precision {values['precision']:.3f}  recall {values['recall']:.3f}"
            )
        if cfg["nll_samples"]:
            t0 = time.perf_counter()
            with part("work"):
                y = likelihood.dequantise(test.images, torch.Generator().manual_seed(seed))
                draws = likelihood.draw(
                    vae,
                    y,
                    cfg["nll_samples"],
                    seed,
                    stage2=stage2,
                    gamma_z=s2["gamma"],
                    prior_samples=cfg["nll_prior_samples"],
                    batch_size=bs,
                )
                nll = likelihood.likelihood_metrics(draws, v["gamma"], two_stage=True)
            metrics |= nll
            timing["eval_seconds_nll"] = time.perf_counter() - t0
            click.echo(
                f"likelihood, {cfg['nll_samples']} importance samples, {timing['eval_seconds_nll']:.1f} s "
                "(IWAE bound, bits/dim):"
            )
            for g in ("trained", "test"):
                if f"gamma_{g}" in nll:
                    click.echo(
                        f"  gamma_{g} {nll[f'gamma_{g}']:.4g}: stage 1 {nll[f'bpd_iwae_stage1_gamma_{g}']:.3f}, "
                        f"two-stage {nll[f'bpd_iwae_twostage_gamma_{g}']:.3f}"
                    )
            click.echo(
                f"  at each model's IWAE-optimal gamma: stage 1 {nll['bpd_iwae_stage1_gamma_iwae']:.3f} "
                f"(gamma {nll['gamma_iwae_stage1']:.4g}), two-stage {nll['bpd_iwae_twostage_gamma_iwae']:.3f} "
                f"(gamma {nll['gamma_iwae_twostage']:.4g})"
            )
        headline = write_metrics("evaluate", metrics, lambda key: key.startswith("fid_") or key in HEADLINE_NLL)
        run.log_metrics(metrics | timing)
        upstream = read_json(METRICS / "train_vae.json")
        headline |= {f"train_vae.{key}": upstream[key] for key in HEADLINE_STAGE1 if key in upstream}
        if floor is not None:  # the scale of every FID above (the reference stage's number, as it logged it)
            headline[f"fid_{space.name}_train_vs_test"] = floor
        score = f"fid_{space_name}_gen2"
        # GEN-2 FID first: MLflow's Compare opens its parallel-coordinates plot on the first metric
        run.log_parent_metrics({k: headline[k] for k in sorted(headline, key=lambda k: k != score)})
        registered = run.wait(
            run.log_model(
                Generator(vae.cpu(), stage2.cpu()),
                "generator",
                torch.randn(4, vae.latent_dim),
                register_as=reg.get("name"),
                alias=reg.get("alias"),
                champion=reg.get("champion"),
                score=score,
                metrics=headline,
                parent=True,
            )
        )
        if registered:
            click.echo(registered)
        click.echo(
            f"metrics: {METRICS / 'evaluate.json'} (every metric: {METRICS / 'all' / 'evaluate.json'}); "
            f"grids: {PLOTS / 'evaluate'}/"
        )


def _over(fid: float, floor: float | None) -> str:
    """`` (3.1x the floor)``: an FID on the scale of its feature space's train-vs-test FID."""
    return "" if not floor else f" ({fid / floor:5.1f}x the floor)"


if __name__ == "__main__":
    main()
