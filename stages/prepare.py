"""Stage prepare: load the dataset named in params, split, resize, save uint8 tensors."""

import json

import click
import torch

from pipeline import data
from pipeline.params import load_params, section
from pipeline.tracking import StageRun
from pipeline.utils import save_grid, write_json
from stages.common import METRICS, PLOTS, PREPARED, params_option, setup, stage


@click.command(name="prepare")
@params_option
@stage
def main(params_path):
    """Load `prepare.dataset`, split it, resize to `prepare.image_size` and write
    data/prepared/{train,test}.pt (uint8 images N x C x H x W, int64 labels) and
    data/prepared/meta.json (shapes, classes, sha256 of the tensors), the counts in
    metrics/prepare.json and a grid of training images in plots/prepare/."""
    params = load_params(params_path)
    cfg = section(params, "prepare", ("dataset", "data_root", "image_size", "test_fraction", "seed"))
    setup(cfg["seed"])
    with StageRun("prepare", params) as run:
        run.log_params({"prepare": cfg})
        train, test = data.load(cfg["dataset"], cfg["data_root"], cfg["test_fraction"], cfg["seed"])
        train = train.subset(cfg.get("limit_train"), cfg["seed"])
        test = test.subset(cfg.get("limit_test"), cfg["seed"] + 1)
        train.images = data.resize(train.images, cfg["image_size"])
        test.images = data.resize(test.images, cfg["image_size"])
        meta = {
            "dataset": cfg["dataset"],
            "channels": train.images.shape[1],
            "image_size": train.images.shape[-1],
            "num_classes": int(torch.cat([train.labels, test.labels]).max()) + 1,
            "num_train": len(train),
            "num_test": len(test),
            "sha256": data.checksum(train.images, train.labels, test.images, test.labels),
        }
        data.save_split(train, PREPARED / "train.pt")
        data.save_split(test, PREPARED / "test.pt")
        write_json(meta, PREPARED / "meta.json")
        write_json({k: meta[k] for k in ("num_train", "num_test", "num_classes", "image_size")}, METRICS / "prepare.json")
        run.log_image(save_grid(train.images[:64], PLOTS / "prepare" / "train_images.png"), key="train_images")
        run.log_params({"data": {k: v for k, v in meta.items() if k != "sha256"}})
        run.set_tags({"bvae.data_sha256": meta["sha256"]})
        click.echo(json.dumps(meta))


if __name__ == "__main__":
    main()
