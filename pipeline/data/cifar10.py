"""``cifar10``: the python pickles of torchvision's layout ``<root>/cifar-10-batches-py/``
(``data_batch_1..5``, ``test_batch``, ``batches.meta``), 32x32 RGB, official split."""

import pickle
from pathlib import Path

import numpy as np
import torch

from pipeline import PipelineError
from pipeline.data.download import download
from pipeline.data.splits import Dataset, Split

CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]


def load_cifar10(root: Path) -> Dataset:
    """CIFAR-10 from torchvision's python pickles: b"data" is uint8 N x 3072 (3 x 32 x 32, channel-major),
    b"labels" the classes, batches.meta's b"label_names" their names."""
    folder = Path(root) / "cifar-10-batches-py"
    message = (
        f"CIFAR-10 not found under {folder}. Offline, download cifar-10-python.tar.gz "
        f"(https://www.cs.toronto.edu/~kriz/cifar.html) and unpack it so that {', '.join(CIFAR_FILES)} "
        f"are in {folder}/"
    )
    if not all((folder / f).is_file() for f in CIFAR_FILES):
        from torchvision.datasets import CIFAR10

        download(lambda: CIFAR10(str(root), download=True), message)

    def read(name: str) -> dict:
        try:
            with open(folder / name, "rb") as f:
                return pickle.load(f, encoding="bytes")
        except Exception as e:  # a damaged pickle raises many types
            raise PipelineError(f"cannot read {folder / name} as a CIFAR-10 pickle ({type(e).__name__}: {e})") from None

    def split(names: list[str]) -> Split:
        batches = [read(n) for n in names]
        images = np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32)
        labels = np.concatenate([b[b"labels"] for b in batches])
        return Split(torch.from_numpy(images.astype(np.uint8)), torch.from_numpy(labels.astype(np.int64)))

    classes = [c.decode() for c in read("batches.meta")[b"label_names"]]
    files = sorted(folder / f for f in CIFAR_FILES)
    return Dataset(split(CIFAR_FILES[:5]), split(["test_batch"]), files, classes, [])


def load(cfg: dict, size: int | None, limits: tuple) -> Dataset:
    """The registry's entry (:func:`pipeline.data.load`)."""
    return load_cifar10(Path(cfg["data_root"]))
