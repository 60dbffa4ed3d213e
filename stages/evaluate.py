"""Stage evaluate: REC and every sampler against the real test images."""

import time

import click
import torch

from pipeline import PipelineError, sampling
from pipeline.data import load_split
from pipeline.features import build_feature_space, fidelity_metrics, resolve_inception_weights, statistics
from pipeline.models import Generator, stage1_from_checkpoint, stage2_from_checkpoint
from pipeline.params import load_params, section
from pipeline.tracking import StageRun
from pipeline.utils import read_json, save_grid, write_json
from stages.common import (
    CLASSIFIER, GMM, METRICS, PLOTS, PREPARED, REFERENCE, STAGE2, VAE, load_checkpoint, params_option, setup, stage,
)  # fmt: skip


@click.command(name="evaluate")
@params_option
@stage
def main(params_path):
    """Score the two-stage model on held-out test images.

    REC: reconstructions of the test images. Samplers (`evaluate.samplers`): gen1
    (z ~ N(0, I), GEN-1), gen2 (through the second stage, GEN-2), gen2_noise (GEN-2
    plus gamma_z noise, Dai & Wipf), gmm (a Gaussian mixture on the latent codes);
    with `evaluate.rescale`, also gen2_rescaled (variance-law rescale). Each set is
    compared with the cached real test features (reference/real_stats.pt) by FID, KID
    and precision/recall in the feature space `reference.features`; metric names say
    which: fid_domain_gen2, kid_mean_inception_rec, ... Writes metrics/evaluate.json and
    PNG grids in plots/evaluate/. The parent MLflow run gets these, the grids and the
    final metrics of the earlier stages; the two-stage generator (u -> images) is logged
    as an MLflow model and registered as `evaluate.register.name` with alias
    `evaluate.register.alias`.
    """
    params = load_params(params_path)
    cfg = section(params, "evaluate", ("num_samples", "samplers", "rescale", "batch_size", "grid_rows", "seed"))
    ref = section(params, "reference", ("features",))
    unknown = sorted(set(cfg["samplers"]) - set(sampling.SAMPLERS))
    if unknown:
        raise PipelineError(f"evaluate.samplers: unknown {unknown} (choose from {', '.join(sampling.SAMPLERS)})")
    reg = cfg.get("register") or {}
    if str(reg.get("alias")).lower() == "latest":
        raise PipelineError("evaluate.register.alias: 'latest' is reserved by MLflow; choose another alias")
    if ref["features"] == "inception":
        resolve_inception_weights(ref.get("inception_weights"))
    device = setup(cfg["seed"])
    reference = load_checkpoint(REFERENCE, "real-image statistics")
    if reference["space"] != ref["features"]:
        raise PipelineError(
            f"{REFERENCE} holds {reference['space']} features but reference.features is {ref['features']}: "
            "run `dvc repro` (it recomputes the reference stage)"
        )
    vae = stage1_from_checkpoint(load_checkpoint(VAE, "stage-1 model")).to(device)
    s2 = load_checkpoint(STAGE2, "stage-2 model")
    stage2 = stage2_from_checkpoint(s2).to(device)
    gmm = load_checkpoint(GMM, "Gaussian mixture")
    test = load_split(PREPARED / "test.pt")
    n, bs, seed = cfg["num_samples"] or len(test), cfg["batch_size"], cfg["seed"]

    with StageRun("evaluate", params) as run:
        run.log_params({"evaluate": cfg})
        space = build_feature_space(
            ref["features"], classifier_path=CLASSIFIER, inception_weights=ref.get("inception_weights"), device=device
        )
        names = ["rec", *cfg["samplers"]] + (["gen2_rescaled"] if cfg["rescale"] else [])
        total = len(test) + n * (len(names) - 1)
        rate = space.throughput(test.images[:64])
        click.echo(f"evaluate: {total:,} images ({', '.join(names)}) through the {space.name} feature network "
                   f"on {device}: about {total / rate:.0f} s at {rate:.0f} images/s")  # fmt: skip

        real_features = reference["features"]
        real_stats = statistics(real_features)
        kw = {"latent_dim": vae.latent_dim, "stage2": stage2, "gamma_z": s2["gamma"], "gmm": gmm, "batch_size": bs}
        z = {name: sampling.latents(name, n, seed + i, **kw) for i, name in enumerate(cfg["samplers"], 1)}
        if cfg["rescale"]:
            gen2 = z["gen2"] if "gen2" in z else sampling.latents("gen2", n, seed + 2, **kw)
            z["gen2_rescaled"] = sampling.rescale_latents(gen2, s2["expected_std"])
        k = cfg["grid_rows"]
        grid = save_grid(test.images[: k * k], PLOTS / "evaluate" / "real.png", nrow=k)
        run.log_image(grid, key="samples_real")
        metrics, timing = {}, {}
        for name in names:
            t0 = time.perf_counter()
            images = sampling.reconstruct(vae, test.images, bs) if name == "rec" else sampling.decode(vae, z[name], bs)
            grid = save_grid(images[: k * k], PLOTS / "evaluate" / f"{name}.png", nrow=k)
            run.log_image(grid, key=f"samples_{name}")
            run.log_image(grid, key=f"samples_{name}", parent=True)
            values = fidelity_metrics(space.extract(images, name), real_features, real_stats, seed)
            metrics |= {f"{m}_{space.name}_{name}": v for m, v in values.items()}
            timing[f"eval_seconds_{name}"] = time.perf_counter() - t0
            click.echo(f"{name:14s} FID {values['fid']:8.3f}  KID {values['kid_mean']:.4f} +- {values['kid_std']:.4f}  "
                       f"precision {values['precision']:.3f}  recall {values['recall']:.3f}")  # fmt: skip
        write_json(metrics, METRICS / "evaluate.json")
        run.log_metrics(metrics | timing)
        upstream = {f"{stage}.{key}": v for stage in ("reference", "train_vae", "train_stage2")
                    for key, v in read_json(METRICS / f"{stage}.json").items()}  # fmt: skip
        run.finish_parent(metrics | upstream)
        version = run.log_model(Generator(vae.cpu(), stage2.cpu()), "generator", torch.randn(4, vae.latent_dim),
                                register_as=reg.get("name"), alias=reg.get("alias"))  # fmt: skip
        if version:
            click.echo(f"registered model {reg['name']} version {version}" + (f" as @{reg['alias']}" if reg.get("alias") else ""))
        click.echo(f"metrics: {METRICS / 'evaluate.json'}; grids: {PLOTS / 'evaluate'}/")


if __name__ == "__main__":
    main()
