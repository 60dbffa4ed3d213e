"""Stage evaluate: REC and every sampler against the real test images."""

import time

import click

from stages.command import params_option, stage
from stages.layout import CLASSIFIER, GMM, METRICS, PLOTS, PREPARED, REFERENCE, STAGE2, VAE


@click.command(name="evaluate")
@params_option
@stage("evaluate", "evaluate", "reference.features", "threads")
def main(params, watch):
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
    dimension D as the param data_dim. The generator (a standard normal draw u -> images) of
    the sampler with the lowest FID against the validation images held out of training (not
    the test images: each sampler's selection_fid_<space>_<sampler>) is logged as an MLflow model, an output of the
    parent too, and registered as `evaluate.register.name` with alias
    `evaluate.register.alias`; its tags and description say which sampler it is.
    """
    from pipeline.config.params import section
    from pipeline.tracking.stage_run import StageRun

    run = StageRun("evaluate", params, before_end=watch.finishing, key=watch.key)

    import torch

    from pipeline import PipelineError
    from pipeline.data.splits import grid_indices
    from pipeline.evaluation import protocols, scoring
    from pipeline.evaluation.features import build_feature_space
    from pipeline.files import read_json
    from pipeline.hardware.timing import part
    from pipeline.images import save_grid
    from pipeline.models import stage1_from_checkpoint, stage2_from_checkpoint
    from stages import sizes
    from stages.runtime import drop_checkpoint, load_checkpoint, load_prepared, setup, write_metrics

    keys = ("num_samples", "samplers", "rescale", "batch_size", "grid_rows", "seed", "protocol", "nll_samples")
    cfg = section(params, "evaluate", (*keys, "nll_prior_samples", "nll_images"))
    ref = section(params, "reference", ("features",))
    if not (PREPARED / "meta.json").is_file():
        raise PipelineError(f"{PREPARED / 'meta.json'} not found: run the prepare stage first (dvc repro)")
    data = read_json(PREPARED / "meta.json")
    features = scoring.feature_space(ref, data)
    device, adaptive = setup(cfg["seed"], params["threads"])
    v = load_checkpoint(VAE, "stage-1 model")
    if "gamma" not in v:
        raise PipelineError(f"{VAE} predates the likelihood evaluation (it holds no gamma): dvc repro -f train_vae")
    vae = stage1_from_checkpoint(v).to(device)
    test = load_prepared("test")
    shape = sizes.Shape(data["num_train"], len(test.images), test.images.shape[1], test.images.shape[-1])
    labelled = data.get("num_classes", 0) >= 2
    sizes.check_params(params, shape, device, ("evaluate",), labelled, latent=vae.latent_dim)  # before any work
    drop_checkpoint("train_stage2")  # after the checks: a stage stopped by one removes nothing
    reference = load_checkpoint(REFERENCE, "real-image statistics")
    if reference["space"] != features:
        raise PipelineError(
            f"{REFERENCE} holds {reference['space']} features but reference.features is {ref['features']} "
            f"({features} for this data): run `dvc repro` (it recomputes the reference stage)"
        )
    floor = reference.get("floor")  # FID of real training images against the test images
    s2 = load_checkpoint(STAGE2, "stage-2 model")
    stage2 = stage2_from_checkpoint(s2).to(device)
    ctx = protocols.Context(
        vae=vae,
        stage2=stage2,
        gamma_z=s2["gamma"],
        gmm=load_checkpoint(GMM, "Gaussian mixture"),
        expected_std=s2["expected_std"],
        test=test.images,
        samplers=list(cfg["samplers"]),
        num_samples=cfg["num_samples"],
        rescale=cfg["rescale"],
        batch_size=cfg["batch_size"],
        seed=cfg["seed"],
    )
    with run:
        run.log_params({"evaluate": cfg, "threads": params["threads"]})
        run.log_params({"data_dim": test.images[0].numel()}, parent=True)  # D: turns beta_eff into a variance
        run.log_input(data["dataset"], data["source"], data["raw_sha256"], parent=True)
        with part("work"):
            proto = scoring.protocol(cfg, ctx)
        space = build_feature_space(
            features,
            classifier_path=CLASSIFIER,
            inception_weights=ref.get("inception_weights"),
            device=device,
            inception_input=proto.inception_input,
        )
        with part("work"):
            rate = space.throughput(test.images[:64])  # the feature network's first pass, its set-up included
        total = len(proto.rec_rows) + proto.count * (len(proto.sets) - 1)
        if not space.same_as_reference:
            total += len(proto.real_rows)  # the real side extracted again (scoring.real_side)
        click.echo(
            f"evaluate: {total:,} images ({', '.join(proto.sets)}) through the {space.name} feature network "
            f"on {device}: about {total / rate:.0f} s at {rate:.0f} images/s"
        )
        for note in proto.notes():
            click.echo(f"evaluate: {note}")
        with part("work"):  # FID statistics (torch-fidelity's import comes with the first)
            real = scoring.real_side(proto, reference["features"], space, test.images)
            selection = scoring.selection_side(reference, space, lambda split: load_prepared(split).images)
        k, seed = cfg["grid_rows"], cfg["seed"]
        shown_at = grid_indices(test.labels[proto.rec_rows], k * k, seed)  # positions in REC's images
        grid = save_grid(test.images[proto.rec_rows[shown_at]], PLOTS / "evaluate" / "real.png", nrow=k)
        run.log_grid(grid, "samples_real")  # the real grid and the REC grid: the same test images
        run.log_grid(grid, "samples_real", parent=True)
        space_name = protocols.space_name(space.name, proto.name)
        metrics, timing = proto.metrics(), {}
        click.echo(
            "KID: the unbiased MMD^2 of torch-fidelity (its units: not scaled), mean +- std over 100 random "
            "subsets of the size shown"
        )
        if floor is not None:
            click.echo(f"FID floor (real training against test images, {space.name} features): {floor:.4g}")
        for name in proto.sets:
            if adaptive is not None and (note := adaptive.tick()):
                click.echo(f"evaluate: {note}")
            t0 = time.perf_counter()
            with part("work"):
                images, values = scoring.score_set(proto, name, space, real, seed, selection)
            shown = images[shown_at] if name == "rec" else images[: k * k]
            grid = save_grid(shown, PLOTS / "evaluate" / f"{name}.png", nrow=k)
            run.log_grid(grid, f"samples_{name}")
            run.log_grid(grid, f"samples_{name}", parent=True)
            metrics |= {f"{m}_{space_name}_{name}": v for m, v in values.items()}
            timing[f"eval_seconds_{name}"] = time.perf_counter() - t0
            click.echo(
                f"{name:14s} FID {values['fid']:8.3f}{scoring.over_floor(values['fid'], floor)}  "
                f"KID {values['kid_mean']:9.3g} +- {values['kid_std']:8.3g} (subsets of {values['kid_subset_size']})  "
                f"precision {values['precision']:.3f}  recall {values['recall']:.3f}"
            )
        if cfg["nll_samples"]:
            t0 = time.perf_counter()
            with part("work"):
                metrics |= (nll := scoring.score_likelihood(vae, stage2, s2["gamma"], v["gamma"], test.images, cfg))
            timing["eval_seconds_nll"] = time.perf_counter() - t0
            scored = len(scoring.likelihood_rows(len(test.images), cfg["nll_images"]))
            click.echo(
                f"likelihood of {scored:,} test images, {cfg['nll_samples']} importance samples, "
                f"{timing['eval_seconds_nll']:.1f} s (IWAE bound, bits/dim):"
            )
            click.echo("\n".join(scoring.likelihood_lines(nll)))
        written = write_metrics("evaluate", metrics, scoring.is_headline)
        run.log_metrics(metrics | timing)
        headline = scoring.headline(written, read_json(METRICS / "train_vae.json"), space.name, floor)
        # GEN-2 FID first: MLflow's Compare opens its parallel-coordinates plot on the first metric
        first = f"fid_{space_name}_gen2"
        run.log_metrics({k: headline[k] for k in sorted(headline, key=lambda k: k != first)}, parent=True)
        sampler, chosen = scoring.choose_generator(metrics, space_name, proto.sets, reference["choice_split"])
        click.echo(f"generator: {chosen}")
        model = scoring.generator(proto, sampler)
        score = f"fid_{space_name}_generator"  # the champion alias compares the generators' own FIDs
        own = {score: metrics[f"fid_{space_name}_{sampler}"]} if f"fid_{space_name}_{sampler}" in metrics else {}
        registered = run.log_model(
            model,
            "generator",
            torch.randn(4, model.latent_dim),
            register=cfg.get("register"),
            metrics=headline | own,
            score=score,
            parent=True,
            about={"bvae.sampler": sampler, "bvae.sampler_choice": chosen},
        )
        if registered:
            click.echo(registered)
        click.echo(
            f"metrics: {METRICS / 'evaluate.json'} (every metric: {METRICS / 'all' / 'evaluate.json'}); "
            f"grids: {PLOTS / 'evaluate'}/"
        )


if __name__ == "__main__":
    main()
