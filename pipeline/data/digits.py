"""``digits``: scikit-learn's bundled 8x8 digits (1,797 real images, no download), split
into train/test with a seeded stratified split (``test_fraction``)."""

from pathlib import Path

import torch

from pipeline.data.splits import Dataset, Split, split_indices


def digits_file() -> Path:
    """The file scikit-learn's ``load_digits`` reads (bundled with scikit-learn)."""
    from importlib.resources import files

    return Path(str(files("sklearn.datasets.data") / "digits.csv.gz"))


def load_digits(test_fraction: float, seed: int) -> tuple[Split, Split]:
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = torch.from_numpy(bunch.images).mul(255 / 16).round().clamp(0, 255).to(torch.uint8).unsqueeze(1)
    labels = torch.from_numpy(bunch.target).long()
    idx_train, idx_test = (torch.from_numpy(i) for i in split_indices(labels.numpy(), test_fraction, seed, True))
    return Split(images[idx_train], labels[idx_train]), Split(images[idx_test], labels[idx_test])


def load(cfg: dict, size: int | None, limits: tuple) -> Dataset:
    """The registry's entry (:func:`pipeline.data.load`): ``cfg`` is ``params["prepare"]``."""
    train, test = load_digits(cfg["test_fraction"], cfg["seed"])
    return Dataset(train, test, [digits_file()], [str(d) for d in range(10)], [])
