"""Stage evaluate: REC, GEN-1 and GEN-2 FID against the real test images."""

import time

import click
import torch

from pipeline import PipelineError, sampling
from pipeline.data import load_split
from pipeline.features import build_feature_space, frechet_distance, resolve_inception_weights, statistics
from pipeline.models import stage1_from_checkpoint, stage2_from_checkpoint
from pipeline.params import load_params, section
from pipeline.tracking import StageRun
from pipeline.utils import read_json, save_grid, write_json
from stages.common import (
    CLASSIFIER, METRICS, PLOTS, PREPARED, REFERENCE, STAGE2, VAE, load_checkpoint, params_option, setup, stage,
)  # fmt: skip


@click.command(name="evaluate")
@params_option
@stage
def main(params_path):
    """Score the two-stage model on held-out test images.

    REC: reconstructions of the test images; GEN-1: samples with z ~ N(0, I);
    GEN-2: samples through the second stage. Each is compared with the cached real
    statistics (reference/real_stats.pt) by the Frechet distance in the feature space
    `reference.features`; metric names say which (fid_domain_gen2, fid_inception_rec,
    ...). Writes metrics/evaluate.json and PNG grids in plots/evaluate/. The parent
    MLflow run gets these and the final metrics of the earlier stages.
    """
    params = load_params(params_path)
    cfg = section(params, "evaluate", ("num_samples", "gamma_noise", "batch_size", "grid_rows", "seed"))
    ref = section(params, "reference", ("features",))
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
    test = load_split(PREPARED / "test.pt")
    n = cfg["num_samples"] or len(test)
    bs = cfg["batch_size"]

    with StageRun("evaluate", params) as run:
        run.log_params({"evaluate": cfg})
        space = build_feature_space(
            ref["features"], classifier_path=CLASSIFIER, inception_weights=ref.get("inception_weights"), device=device
        )
        click.echo(f"evaluate: {len(test) + 2 * n} images through the {space.name} feature network")
        real_stats = statistics(reference["features"])
        images = {
            "real": test.images,
            "rec": sampling.reconstruct(vae, test.images, bs),
            "gen1": sampling.generate_gen1(vae, n, cfg["seed"], bs),
            "gen2": sampling.generate_gen2(vae, stage2, n, cfg["seed"] + 1, s2["gamma"] if cfg["gamma_noise"] else 0.0, bs),
        }
        metrics, timing = {}, {}
        for name, imgs in images.items():
            k = cfg["grid_rows"]
            grid = save_grid(imgs[: k * k], PLOTS / "evaluate" / f"{name}.png", nrow=k)
            run.log_image(grid, key=f"samples_{name}")
            if name == "real":
                continue
            t0 = time.perf_counter()
            fid = frechet_distance(statistics(space.extract(imgs, name)), real_stats)
            timing[f"eval_seconds_{name}"] = time.perf_counter() - t0
            metrics[f"fid_{space.name}_{name}"] = fid
            click.echo(f"FID[{space.name}] {name.upper():5s} {fid:.4g}")
        write_json(metrics, METRICS / "evaluate.json")
        run.log_metrics(metrics | timing)
        upstream = {f"{name}.{k}": v for name in ("reference", "train_vae", "train_stage2")
                    for k, v in read_json(METRICS / f"{name}.json").items()}  # fmt: skip
        run.finish_parent(metrics | upstream)
        click.echo(f"metrics: {METRICS / 'evaluate.json'}; grids: {PLOTS / 'evaluate'}/")


if __name__ == "__main__":
    main()
