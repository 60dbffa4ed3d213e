"""``folder``: every image Pillow reads under ``data_root`` (hidden files and folders
skipped), centre-cropped to a square and resized to ``image_size`` (bicubic). Top-level
subfolders are the classes when there are at least two; otherwise it is unlabelled.
Seeded train/test split with ``test_fraction``, stratified where possible."""

import itertools
import math
import os
from functools import partial
from pathlib import Path

import numpy as np
import torch

from pipeline import PipelineError
from pipeline.data.decoding import check_bad, decode_all, stack
from pipeline.data.listing import list_images, shown
from pipeline.data.splits import Dataset, Split, sample_indices, split_indices


def image_extensions() -> list[str]:
    """Suffixes of the formats Pillow reads (its registered extensions minus the write-only PDF and Palm)."""
    from PIL import Image

    return sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt not in ("PDF", "PALM"))


def load_folder(
    root: Path, size: int | None, test_fraction: float, limits: tuple, seed: int, bad_images: str
) -> Dataset:
    """Every image under ``root`` as a square ``size`` x ``size`` image, split into train/test.

    Labels: each top-level subfolder is a class when there are two or more; images all in
    ``root`` itself, or in a single subfolder, are unlabelled. Channels: 1 when every image
    is grey (modes 1, L, LA, I, I;16, F), else 3. The split is stratified when labelled and
    every class can appear on both sides; the ``limits`` choose files before decoding.
    """
    root = Path(root)
    if size is None:
        raise PipelineError("prepare.image_size: the folder dataset needs an image size (images are cropped square)")
    if not root.exists():
        raise PipelineError(f"prepare.data_root: {root} does not exist (the folder dataset reads images from it)")
    if not root.is_dir():
        raise PipelineError(f"prepare.data_root: {root} is not a directory (the folder dataset reads images from it)")
    extensions = image_extensions()
    paths, ignored, unusable = list_images(root, set(extensions))
    if ignored:
        named = "; ".join(f"{path} ({why})" for path, why in ignored[:5])
        more = f"; and {len(ignored) - 5} more" if len(ignored) > 5 else ""
        print(f"{root}: ignored {len(ignored)} entr{'y' if len(ignored) == 1 else 'ies'}: {named}{more}")
    if not paths:
        raise PipelineError(f"no images found in {root} (looked for files ending in {' '.join(extensions)})")
    rel = [p.relative_to(root).parts for p in paths]
    in_root = sum(len(r) == 1 for r in rel)
    if 0 < in_root < len(rel):
        raise PipelineError(
            f"{root} has images both directly in it ({in_root}) and in subfolders ({len(rel) - in_root}): put them "
            f"all in class subfolders, or all directly in {root}"
        )
    classes = sorted({r[0] for r in rel}) if in_root == 0 else []
    classes = classes if len(classes) >= 2 else None
    labels = np.array([classes.index(r[0]) for r in rel] if classes else [-1] * len(rel), dtype=np.int64)
    needed = next(n for n in itertools.count(2) if n - math.ceil(test_fraction * n) >= 1)
    if len(paths) < needed:
        raise PipelineError(
            f"found {len(paths)} image(s) in {root}: a train/test split with test_fraction {test_fraction} needs "
            f"at least {needed}"
        )
    idx = split_indices(labels, test_fraction, seed, stratify=classes is not None)
    idx = [ix[sample_indices(len(ix), limit, s).numpy()] for ix, limit, s in zip(idx, limits, (seed, seed + 1))]
    chosen = np.concatenate(idx)
    decoded, skipped = decode_all([paths[i] for i in chosen], partial(_decode_image, size=size), root, "images")
    skipped = unusable + [(shown(path), reason) for path, reason in skipped]
    check_bad(skipped, bad_images)
    channels = max((a.shape[0] for a in decoded if a is not None), default=1)
    splits, start = [], 0
    for ix in idx:
        keep = [(a, labels[i]) for a, i in zip(decoded[start : start + len(ix)], ix) if a is not None]
        start += len(ix)
        splits.append(Split(stack([a for a, _ in keep], channels, size), torch.tensor([y for _, y in keep]).long()))
    if not (len(splits[0]) and len(splits[1])):
        raise PipelineError(
            f"too few readable images in {root}: {len(chosen) - len(skipped)} of {len(chosen)} were readable, "
            f"{len(splits[0])} for training and {len(splits[1])} for testing; each split needs at least 1"
        )
    return Dataset(splits[0], splits[1], sorted(paths[i] for i in chosen), classes, skipped)


GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")


def _decode_image(path: Path, size: int) -> np.ndarray:
    """One image file as uint8 (C, size, size), C = 1 for grey modes, else 3.

    EXIF orientation applied; alpha (RGBA, LA, P with transparency) composited on white;
    16-bit grey scaled by 255 / 65535; CMYK and other modes converted by Pillow; then
    centre-cropped to a square and resized (bicubic, antialiased).
    """
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
    grey = img.mode in GREY_MODES
    if img.mode.startswith("I"):
        img = Image.fromarray(np.clip(np.rint(np.asarray(img) / 257), 0, 255).astype(np.uint8), "L")
    elif (img.mode == "P" and "transparency" in img.info) or img.mode in ("PA", "RGBa", "La"):
        img = img.convert("LA" if grey else "RGBA")
    target = "L" if grey else "RGB"
    if img.mode in ("LA", "RGBA"):
        background = Image.new(target, img.size, "white")
        background.paste(img.convert(target), mask=img.getchannel("A"))
        img = background
    img = ImageOps.fit(img.convert(target), (size, size), Image.Resampling.BICUBIC)
    array = np.asarray(img)
    return array[None] if grey else array.transpose(2, 0, 1)


def load(cfg: dict, size: int | None, limits: tuple) -> Dataset:
    """The registry's entry (:func:`pipeline.data.load`)."""
    root, seed, bad_images = Path(cfg["data_root"]), cfg["seed"], cfg.get("bad_images", "skip")
    return load_folder(root, size, cfg["test_fraction"], limits, seed, bad_images)
