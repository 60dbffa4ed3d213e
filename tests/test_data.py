"""Dataset loaders on real or generated files in their real on-disk formats."""

import shutil

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, write_fake_mnist
from pipeline import PipelineError, data


def test_digits_split_is_stratified_seeded_uint8():
    train, test = data.load("digits", "unused", test_fraction=0.2, seed=0)
    assert train.images.dtype == torch.uint8 and train.images.shape[1:] == (1, 8, 8)
    assert len(train) + len(test) == 1797 and len(test) == 360
    assert int(train.images.max()) == 255  # 0..16 scaled to 0..255
    assert torch.bincount(test.labels).min() >= 35  # every class held out
    again, _ = data.load("digits", "unused", test_fraction=0.2, seed=0)
    assert torch.equal(train.images, again.images)


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_torchvision_loaders_read_idx_files(tmp_path, name, folder):
    arrays = write_fake_mnist(tmp_path, folder)
    train, test = data.load(name, str(tmp_path), 0.2, 0)
    assert train.images.shape == (40, 1, 28, 28) and test.images.shape == (20, 1, 28, 28)
    assert np.array_equal(train.images[:, 0].numpy(), arrays["train"][0])
    assert np.array_equal(test.labels.numpy(), arrays["t10k"][1])


def test_missing_mnist_is_one_clear_error(tmp_path):
    with pytest.raises(PipelineError, match=r"MNIST not found under .*copy the four MNIST files"):
        data.load("mnist", str(tmp_path), 0.2, 0)


def test_unknown_dataset():
    with pytest.raises(PipelineError, match="unknown dataset 'cifar'"):
        data.load("cifar", "x", 0.2, 0)


def test_resize_and_subset():
    images = torch.arange(2 * 28 * 28, dtype=torch.float32).reshape(2, 1, 28, 28).remainder(256).to(torch.uint8)
    small = data.resize(images, 14)
    assert small.shape == (2, 1, 14, 14) and small.dtype == torch.uint8
    assert data.resize(images, None) is images
    split = data.Split(images.repeat(5, 1, 1, 1), torch.arange(10))
    sub = split.subset(4, seed=0)
    assert len(sub) == 4 and torch.equal(sub.labels, sub.labels.sort().values)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "MNIST").is_dir(), reason="needs ../shared/data")
def test_real_mnist_from_gz_files(tmp_path):
    shutil.copytree(SHARED_DATA / "MNIST", tmp_path / "MNIST")
    train, test = data.load("mnist", str(tmp_path), 0.2, 0)
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(train.labels).tolist()[:2] == [5923, 6742]
