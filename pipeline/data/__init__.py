"""Datasets as in-memory uint8 tensors (N, C, H, W) with integer class labels (-1 when unlabelled).

:func:`load` reads the dataset that ``params["prepare"]`` names (``digits``, ``mnist``,
``fashion_mnist``, ``cifar10``, ``celeba``, ``folder``: in the modules here; their
files, splits, crops and labels are in docs/data.md) and returns a :class:`Dataset`: the
train and test :class:`Split` s, the raw files it read (``prepare`` hashes them), the class
names and the unreadable images it skipped (``bad_images``). ``limit_train`` /
``limit_test`` keep seeded subsets, chosen before any image is decoded; more than
``decoding.PARALLEL_MIN`` image files decode in a process pool, with the same result; ``channels`` and
``jpeg_quality`` convert every image; ``val_fraction`` of the training images are then held out
as the validation split. Images stay uint8 end to end.
"""

import math
from pathlib import Path

import torch

from pipeline import PipelineError
from pipeline.config.choices import DATASETS
from pipeline.data import celeba, cifar10, digits, folder, mnist
from pipeline.data.decoding import describe_skipped
from pipeline.data.digits import digits_file
from pipeline.data.hashing import checksum, content_hash
from pipeline.data.splits import Dataset, Split, hold_out, sample_indices
from pipeline.data.transforms import jpeg_roundtrip, resize, to_channels
from pipeline.hardware import sizes
from pipeline.hardware.sizes import Size
from pipeline.hardware.timing import timed

CPU = torch.device("cpu")
SOURCES = {  # prepare.dataset -> the module that loads it (its ``load(cfg, size, limits)``)
    "digits": digits,
    "mnist": mnist,
    "fashion_mnist": mnist,
    "cifar10": cifar10,
    "celeba": celeba,
    "folder": folder,
}

__all__ = [
    "SOURCES",
    "Dataset",
    "Split",
    "checksum",
    "content_hash",
    "describe",
    "describe_skipped",
    "digits_file",
    "jpeg_roundtrip",
    "load",
    "raw_root",
    "resize",
    "sample_indices",
    "save_split",
    "source_name",
    "to_channels",
]


def load(cfg: dict) -> Dataset:
    """The dataset ``cfg["dataset"]`` (``cfg`` is ``params["prepare"]``, as
    :mod:`pipeline.config.schema` checked it), limited to ``limit_train`` / ``limit_test``
    images (seeds ``seed`` and ``seed + 1``), resized to ``image_size`` and converted to
    ``channels``; then ``val_fraction`` of the training images go to ``val`` (seed ``seed + 2``)."""
    name, size, channels = cfg["dataset"], cfg.get("image_size"), cfg.get("channels")
    seed = cfg["seed"]
    limits = (cfg.get("limit_train"), cfg.get("limit_test"))
    if size is not None:  # celeba and folder decode every image at this size: one must fit
        sizes.check([Size("prepare.image_size", size, lambda s: 4 * 3 * s * s, "one RGB image in float32")], CPU)
    ds = SOURCES[name].load(cfg, size, limits)
    ds.train, ds.test = ds.train.subset(limits[0], seed), ds.test.subset(limits[1], seed + 1)
    if size is not None:
        n, c = len(ds.train) + len(ds.test), channels or ds.train.images.shape[1]
        what = f"{n:,} images of {c} channels (uint8, and float32 while resizing)"
        sizes.check([Size("prepare.image_size", size, lambda s: 5 * n * c * s * s, what)], CPU)
    for split in (ds.train, ds.test):
        split.images = to_channels(resize(split.images, size), channels)
        if cfg.get("jpeg_quality"):
            split.images = jpeg_roundtrip(split.images, cfg["jpeg_quality"])
    if cfg.get("val_fraction"):
        ds.train, ds.val = hold_out(ds.train, cfg["val_fraction"], seed + 2)
    else:
        ds.val = Split(ds.train.images[:0], ds.train.labels[:0])
    return ds


PUBLISHED = {  # prepare.dataset -> (training images, test images, channels, side) before limits and resizing
    "mnist": (60_000, 10_000, 1, 28),
    "fashion_mnist": (60_000, 10_000, 1, 28),
    "cifar10": (50_000, 10_000, 3, 32),
    "celeba": (162_770, 19_962, 3, celeba.CELEBA_SIZE),  # partitions 0 and 2
}
DIGITS = 1797  # scikit-learn's 8x8 digits


def expected_shape(cfg: dict, folder_images: int) -> "Shape":
    """The shape prepare will give the data of ``cfg`` (``params["prepare"]``) without loading
    it, for `bvae check`: the published split sizes (digits and a folder of ``folder_images``
    split by ``test_fraction``, the test share rounded up), limits, the validation share held
    out of training, image size and channels."""
    from pipeline.hardware.sizes import Shape

    name = cfg["dataset"]
    if name in PUBLISHED:
        n_train, n_test, channels, side = PUBLISHED[name]
    else:
        total = DIGITS if name == "digits" else folder_images
        n_test = math.ceil(cfg["test_fraction"] * total)
        n_train, channels, side = total - n_test, 1 if name == "digits" else 3, 8
    limit_train, limit_test = cfg.get("limit_train"), cfg.get("limit_test")
    n_train = min(n_train, limit_train or n_train)
    return Shape(
        n_train - math.ceil((cfg.get("val_fraction") or 0) * n_train),
        min(n_test, limit_test or n_test),
        cfg.get("channels") or channels,
        cfg.get("image_size") or side,
    )


def describe(ds: Dataset, cfg: dict) -> dict:
    """What data/prepared/meta.json says of the prepared dataset: its name and source, shapes,
    classes, counts, sha256 of the tensors and of the raw files read, the skipped files."""
    train, test, val = ds.train, ds.test, ds.val
    return {
        "dataset": cfg["dataset"],
        "source": source_name(cfg),
        "channels": train.images.shape[1],
        "image_size": train.images.shape[-1],
        "classes": ds.classes,
        "num_classes": len(ds.classes or []),
        "labelled": ds.classes is not None,
        "num_train": len(train),
        "num_test": len(test),
        "num_val": len(val),
        "sha256": checksum(train.images, train.labels, test.images, test.labels, val.images, val.labels),
        "raw_sha256": content_hash(ds.files, raw_root(cfg)),
        "skipped": [{"path": path, "reason": reason} for path, reason in ds.skipped],
    }


def raw_root(cfg: dict) -> Path:
    """Where the raw files of ``cfg["dataset"]`` live: ``data_root``, or scikit-learn's data folder for digits."""
    return digits_file().parent if cfg["dataset"] == "digits" else Path(cfg["data_root"])


def source_name(cfg: dict) -> str:
    """Where the raw data came from, as the user wrote it (``data_root`` from params.yaml), or
    the scikit-learn file for digits: never an absolute path this machine resolved, so the
    prepared data's hash does not depend on where the project is cloned."""
    if cfg["dataset"] == "digits":
        return "scikit-learn: sklearn/datasets/data/digits.csv.gz"
    return str(cfg["data_root"])


@timed("io")
def save_split(split: Split, path) -> None:
    from pipeline.files import save_torch

    save_torch({"images": split.images, "labels": split.labels}, path)
