"""``celeba``: ``<root>/celeba/img_align_celeba/*.jpg`` with ``list_eval_partition.txt``
(train = partition 0, test = partition 2); each 178x218 image is cropped to its central
128x128 face (rows 45:173, cols 25:153, as Dai & Wipf's TwoStageVAE code) and resized to
``image_size`` (default 64) with Pillow's antialiased bilinear filter. Unlabelled."""

from functools import partial
from pathlib import Path

import numpy as np
import torch

from pipeline import PipelineError
from pipeline.data.decoding import check_bad, decode_all, stack
from pipeline.data.download import download
from pipeline.data.splits import Dataset, Split, sample_indices

CELEBA_CROP = (25, 45, 153, 173)  # left, top, right, bottom: rows 45:173, cols 25:153 of the 178x218 images


CELEBA_SIZE = 64  # celeba's image_size when it is null


def load_celeba(root: Path, size: int, limits: tuple, seed: int, bad_images: str) -> Dataset:
    """CelebA's aligned images, official train (0) and test (2) partitions, cropped and resized
    to ``size``; the ``limits`` choose the files before decoding. Unlabelled."""
    base = Path(root) / "celeba"
    partition, images = base / "list_eval_partition.txt", base / "img_align_celeba"
    message = (
        f"CelebA not found under {base}. Offline, download img_align_celeba.zip and list_eval_partition.txt "
        f"(https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html), unzip the images into {images}/ and put "
        f"list_eval_partition.txt in {base}/"
    )
    if not (partition.is_file() and images.is_dir()):
        from torchvision.datasets import CelebA

        download(lambda: CelebA(str(root), split="all", target_type=[], download=True), message)
    parts = {0: [], 2: []}
    for i, line in enumerate(partition.read_text().splitlines(), 1):
        try:
            name, part = line.split()
            parts.setdefault(int(part), []).append(images / name)
        except ValueError:
            if line.strip():
                raise PipelineError(f"{partition}, line {i}: expected '<image> <partition>', got {line!r}") from None
    chosen = [
        [paths[i] for i in sample_indices(len(paths), limit, s)]
        for paths, limit, s in ((parts[0], limits[0], seed), (parts[2], limits[1], seed + 1))
    ]
    decoded, skipped = decode_all(chosen[0] + chosen[1], partial(_decode_celeba, size=size), root, "celeba")
    check_bad(skipped, bad_images)
    splits = []
    for arrays in (decoded[: len(chosen[0])], decoded[len(chosen[0]) :]):
        kept = [a for a in arrays if a is not None]
        splits.append(Split(stack(kept, 3, size), torch.full((len(kept),), -1, dtype=torch.long)))
    return Dataset(splits[0], splits[1], sorted([partition] + chosen[0] + chosen[1]), None, skipped)


def _decode_celeba(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB").crop(CELEBA_CROP).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img).transpose(2, 0, 1)


def load(cfg: dict, size: int | None, limits: tuple) -> Dataset:
    """The registry's entry (:func:`pipeline.data.load`); ``size`` None: CELEBA_SIZE."""
    return load_celeba(Path(cfg["data_root"]), size or CELEBA_SIZE, limits, cfg["seed"], cfg.get("bad_images", "skip"))
