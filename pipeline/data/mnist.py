"""``mnist`` / ``fashion_mnist``: torchvision's loaders and official train/test splits, read
from ``<root>/MNIST/raw`` or ``<root>/FashionMNIST/raw`` (idx files, .gz or unpacked)."""

from pathlib import Path

from pipeline.data.download import download
from pipeline.data.splits import Dataset, Split


def _load_torchvision(cls, folder: str, root: str) -> tuple[Split, Split]:
    """Use torchvision's own loader; offline it reads the files already under ``root``."""
    from torchvision.datasets.utils import check_integrity

    raw = Path(root) / folder / "raw"
    message = (
        f"{folder} not found under {raw}. Offline, copy the four {folder} files (train/t10k images and labels, "
        f".gz or unpacked) into {raw}/"
    )
    splits = []
    for train in (True, False):
        try:
            ds = cls(root=root, train=train, download=False)  # unpacked files present
        except RuntimeError:
            # Verifies the md5 of the .gz files in raw/ and unpacks them (no network needed), or downloads them.
            network = not all(check_integrity(str(raw / name), md5) for name, md5 in cls.resources)
            ds = download(lambda t=train: cls(root=root, train=t, download=True), message, network)
        splits.append(Split(ds.data.unsqueeze(1).contiguous(), ds.targets.long()))
    return splits[0], splits[1]


def load_mnist(root: str) -> tuple[Split, Split]:
    from torchvision.datasets import MNIST

    return _load_torchvision(MNIST, "MNIST", root)


def load_idx(name: str, root: Path) -> Dataset:
    """mnist or fashion_mnist as a Dataset; its files are the four unpacked idx files torchvision reads."""
    from torchvision.datasets import MNIST, FashionMNIST

    cls, folder = (MNIST, "MNIST") if name == "mnist" else (FashionMNIST, "FashionMNIST")
    train, test = _load_torchvision(cls, folder, str(root))
    files = sorted(root / folder / "raw" / Path(gz).stem for gz, _ in cls.resources)
    return Dataset(train, test, files, list(cls.classes), [])


def load(cfg: dict, size: int | None, limits: tuple) -> Dataset:
    """The registry's entry (:func:`pipeline.data.load`), for mnist and fashion_mnist."""
    return load_idx(cfg["dataset"], Path(cfg["data_root"]))
