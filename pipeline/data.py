"""Datasets as in-memory uint8 tensors (N, C, H, W) with integer class labels.

Every loader returns ``(train, test)`` :class:`Split` s. Images stay uint8 end to end;
training slices batches from the tensor and scales them to [0, 1] on the fly.

- ``digits``: scikit-learn's bundled 8x8 digits (1,797 real images, no download),
  split into train/test with a seeded stratified split.
- ``mnist`` / ``fashion_mnist``: torchvision's loaders and official train/test
  splits, read from ``<root>/MNIST/raw`` or ``<root>/FashionMNIST/raw``. Where the
  files are absent torchvision downloads them (needs a network).
"""

import hashlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pipeline import PipelineError


@dataclass
class Split:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, n: int | None, seed: int) -> "Split":
        """A seeded random subset of ``n`` items (all of them when ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        return Split(self.images[idx], self.labels[idx])


def load_digits(test_fraction: float, seed: int) -> tuple[Split, Split]:
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    images = torch.from_numpy(bunch.images).mul(255 / 16).round().clamp(0, 255).to(torch.uint8).unsqueeze(1)
    labels = torch.from_numpy(bunch.target).long()
    idx_train, idx_test = train_test_split(
        torch.arange(len(labels)).numpy(), test_size=test_fraction, random_state=seed, stratify=labels.numpy()
    )
    idx_train, idx_test = torch.from_numpy(idx_train).sort().values, torch.from_numpy(idx_test).sort().values
    return Split(images[idx_train], labels[idx_train]), Split(images[idx_test], labels[idx_test])


def _load_torchvision(cls, folder: str, root: str) -> tuple[Split, Split]:
    """Use torchvision's own loader; offline it reads the files already under ``root``."""
    splits = []
    for train in (True, False):
        try:
            ds = cls(root=root, train=train, download=False)  # unpacked files present
        except RuntimeError:
            try:
                # Verifies the md5 of the .gz files in raw/ and unpacks them, or downloads them.
                ds = cls(root=root, train=train, download=True)
            except Exception as e:  # network errors come in many types
                reason = " ".join(str(e).split())[:300]
                raise PipelineError(
                    f"{folder} not found under {root}/{folder}/raw and the download failed ({reason}). "
                    f"Offline, copy the four {folder} files (train/t10k images and labels, .gz or unpacked) "
                    f"into {root}/{folder}/raw/."
                ) from None
        splits.append(Split(ds.data.unsqueeze(1).contiguous(), ds.targets.long()))
    return splits[0], splits[1]


def load_mnist(root: str) -> tuple[Split, Split]:
    from torchvision.datasets import MNIST

    return _load_torchvision(MNIST, "MNIST", root)


def load_fashion_mnist(root: str) -> tuple[Split, Split]:
    from torchvision.datasets import FashionMNIST

    return _load_torchvision(FashionMNIST, "FashionMNIST", root)


DATASETS = ("digits", "mnist", "fashion_mnist")


def load(name: str, root: str, test_fraction: float, seed: int) -> tuple[Split, Split]:
    if name == "digits":
        return load_digits(test_fraction, seed)
    if name == "mnist":
        return load_mnist(root)
    if name == "fashion_mnist":
        return load_fashion_mnist(root)
    raise PipelineError(f"prepare.dataset: unknown dataset '{name}' (choose one of {', '.join(DATASETS)})")


def resize(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Resize uint8 images to ``size`` x ``size`` (antialiased bilinear); ``None`` keeps them."""
    if size is None or tuple(images.shape[-2:]) == (size, size):
        return images
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def checksum(*tensors: torch.Tensor) -> str:
    """sha256 over the raw bytes of tensors: identifies the exact prepared data."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def save_split(split: Split, path) -> None:
    from pipeline.utils import save_torch

    save_torch({"images": split.images, "labels": split.labels}, path)


def load_split(path) -> Split:
    d = torch.load(path, weights_only=True)
    return Split(d["images"], d["labels"])
