"""Stage prepare: load the dataset named in params, split, resize, save uint8 tensors."""

import json

import click

from stages.command import params_option, stage
from stages.layout import METRICS, PLOTS, PREPARED


@click.command(name="prepare")
@params_option
@stage("prepare", "prepare")
def main(params, watch):
    """Load `prepare.dataset`, split it, resize to `prepare.image_size`, convert to
    `prepare.channels`, hold `prepare.val_fraction` of the training images out as the
    validation split and write data/prepared/{train,val,test}.pt (uint8 images N x C x H x W,
    int64 labels, -1 when unlabelled) and data/prepared/meta.json (shapes, classes, skipped
    unreadable images, sha256 of the tensors and of the raw files read), the counts in
    metrics/prepare.json and a grid of training images in plots/prepare/. The raw files'
    hash is the MLflow run's dataset input."""
    from pipeline.config.params import section
    from pipeline.tracking.stage_run import StageRun

    cfg = section(params, "prepare", ("dataset", "data_root", "image_size", "test_fraction", "val_fraction", "seed"))
    run = StageRun("prepare", params, before_end=watch.finishing, key=watch.key)

    from pipeline import data
    from pipeline.files import write_json
    from pipeline.hardware.timing import part
    from pipeline.images import save_grid
    from stages.runtime import setup

    setup(cfg["seed"], threads=1)  # a few large ops: one thread, whatever the params say
    with run:
        run.log_params({"prepare": cfg})
        with part("work"):
            ds = data.load(cfg)
            meta = data.describe(ds, cfg)
        data.save_split(ds.train, PREPARED / "train.pt")
        data.save_split(ds.test, PREPARED / "test.pt")
        data.save_split(ds.val, PREPARED / "val.pt")
        write_json(meta, PREPARED / "meta.json")
        counts = ("num_train", "num_val", "num_test", "num_classes", "image_size")
        write_json({k: meta[k] for k in counts} | {"num_skipped": len(ds.skipped)}, METRICS / "prepare.json")
        run.log_grid(save_grid(ds.train.images[:64], PLOTS / "prepare" / "train_images.png"), "train_images")
        shown = ("dataset", "channels", "image_size", "num_classes", "labelled", "num_train", "num_val", "num_test")
        run.log_params({"data": {k: meta[k] for k in shown}})
        run.log_input(cfg["dataset"], str(data.raw_root(cfg).resolve()), meta["raw_sha256"])
        run.set_tags({"bvae.data_sha256": meta["sha256"], "bvae.raw_sha256": meta["raw_sha256"]})
        if ds.skipped:
            click.echo(f"skipped {data.describe_skipped(ds.skipped)}; the full list is in {PREPARED / 'meta.json'}")
        click.echo(json.dumps({k: v for k, v in meta.items() if k not in ("classes", "skipped")}))


if __name__ == "__main__":
    main()
