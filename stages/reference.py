"""Stage reference: the evaluation feature space and the real test images' statistics.

Trains the domain classifier, then computes features of the real test images, of as many
training images (the train-vs-test floor) and of as many validation images (the registered
generator is chosen on them) in the `reference.features` space. Cached by DVC: training a new model never recomputes them.
"""

import click

from stages.command import params_option, stage
from stages.layout import CLASSIFIER, METRICS, PLOTS, PREPARED, REFERENCE


@click.command(name="reference")
@params_option
@stage("reference", "reference", "threads")
def main(params, watch):
    """Train the domain classifier (models/classifier.pt) and write the real test
    images' features (reference/real_stats.pt, with the floor) in the feature space
    `reference.features` (auto: domain for labelled data, inception for unlabelled);
    metrics/reference.json holds the classifier's test accuracy and the FID of real
    training images against the test images (the floor: what a perfect generator would
    score against these test images, in this feature space). The features of up to as many
    validation images (`prepare.val_fraction`; the training images when there are none) go
    with them: evaluate chooses the registered generator on those."""
    from pipeline.config.params import section
    from pipeline.tracking.stage_run import StageRun

    run = StageRun("reference", params, before_end=watch.finishing, key=watch.key)

    import torch

    from pipeline import PipelineError
    from pipeline.config.choices import MIN_IMAGES, feature_space
    from pipeline.evaluation import classifier as clf
    from pipeline.evaluation.features import (
        build_feature_space,
        frechet_distance,
        resolve_inception_weights,
        statistics,
    )
    from pipeline.files import read_json, save_torch, write_csv, write_json
    from pipeline.hardware.sizes import batch_within
    from pipeline.hardware.timing import part
    from stages.runtime import load_prepared, setup, significant

    ref = section(params, "reference", ("features", "classifier"))
    cfg = section(ref, "classifier", ("feature_dim", "epochs", "batch_size", "lr", "seed"))
    if ref["features"] == "inception":  # fail before any work when the weights cannot be had
        resolve_inception_weights(ref.get("inception_weights"))
    if not (PREPARED / "meta.json").is_file():
        raise PipelineError(f"{PREPARED / 'meta.json'} not found: run the prepare stage first (dvc repro)")
    meta = read_json(PREPARED / "meta.json")
    if min(meta.get("num_train", MIN_IMAGES), meta.get("num_test", MIN_IMAGES)) < MIN_IMAGES:  # before any training
        raise PipelineError(
            f"{PREPARED}: {meta['num_train']} training and {meta['num_test']} test images; FID, KID "
            f"and precision/recall need at least {MIN_IMAGES} of each: raise prepare.limit_train / "
            "limit_test or prepare.test_fraction, or add images"
        )
    if 0 < meta.get("num_val", MIN_IMAGES) < MIN_IMAGES:
        raise PipelineError(
            f"{PREPARED}: {meta['num_val']} validation images; the registered generator's choice (an FID) needs at "
            f"least {MIN_IMAGES}: raise prepare.val_fraction, or set it to 0 to choose on training images"
        )
    labelled = meta.get("num_classes", 0) >= 2
    features = feature_space(ref["features"], labelled)
    if ref["features"] == "domain" and not labelled:
        raise PipelineError(
            "reference.features: domain needs class labels (it trains a classifier on them), but the prepared "
            "data is unlabelled (for the folder dataset, put each class in its own subfolder); or use "
            "reference.features: inception or auto (needs the Inception-v3 weights)"
        )
    if features == "domain":
        if line := batch_within(
            "reference.classifier.batch_size", cfg["batch_size"], meta["num_train"], "training images"
        ):
            click.echo(f"reference: {line}")
    if features != ref["features"]:  # auto
        click.echo(
            f"reference.features: auto: {features} features ("
            + (
                "the data has class labels)"
                if labelled
                else "the data has no class labels, which the domain classifier needs: put each class in its own "
                "subfolder for it): the standard FID, which needs the Inception-v3 weights"
            )
        )
        if features == "inception":
            resolve_inception_weights(ref.get("inception_weights"), labelled)
    device, adaptive = setup(cfg["seed"], params["threads"])
    train, test, val = load_prepared("train"), load_prepared("test"), load_prepared("val")
    with run:
        run.log_params({"reference": ref, "threads": params["threads"]})
        metrics = {}
        if labelled:
            config = {
                "channels": train.images.shape[1],
                "num_classes": int(train.labels.max()) + 1,
                "feature_dim": cfg["feature_dim"],
            }
            model = clf.DomainClassifier(**config).to(device)
            with part("work"):
                history = clf.train_classifier(
                    model, train, epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"], adaptive=adaptive
                )
                accuracy = clf.accuracy(model, test)
            for row in history:
                run.log_epoch({f"classifier_{k}": v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
            write_csv(history, PLOTS / "reference" / "classifier_history.csv")
            metrics["classifier_test_accuracy"] = accuracy
            save_torch({"config": config, "state_dict": model.cpu().state_dict()}, CLASSIFIER)
        else:  # the output DVC expects; no domain feature space without labels
            click.echo("unlabelled data: no domain classifier")
            save_torch({"config": None, "state_dict": {}}, CLASSIFIER)

        space = build_feature_space(
            features, classifier_path=CLASSIFIER, inception_weights=ref.get("inception_weights"), device=device
        )
        with part("work"):
            real = space.extract(test.images, "test images")
            floor_idx = torch.randperm(len(train))[: len(test)]
            train_features = space.extract(train.images[floor_idx], "train images")
            floor = frechet_distance(statistics(train_features), statistics(real))
            choice = "val" if len(val) else "train"  # the images evaluate chooses the registered generator on
            rows = torch.randperm(len(val))[: len(test)] if len(val) else floor_idx
            choice_features = space.extract(val.images[rows], "validation images") if len(val) else train_features
        choice_side = {"choice_split": choice, "choice_rows": rows, "choice_features": choice_features}
        save_torch({"space": space.name, "features": real, "floor": floor} | choice_side, REFERENCE)
        write_json(
            {"space": space.name, "real_test_images": len(real), "labelled": labelled},
            PLOTS / "reference" / "features.json",
        )

        metrics[f"fid_{space.name}_train_vs_test"] = floor
        write_json(significant(metrics), METRICS / "reference.json")
        run.log_metrics(metrics)
        run.log_artifact(CLASSIFIER, "model")
        if labelled:
            click.echo(f"domain classifier test accuracy {metrics['classifier_test_accuracy']:.4f}")
        click.echo(f"FID[{space.name}] train vs test {floor:.4g}")


if __name__ == "__main__":
    main()
