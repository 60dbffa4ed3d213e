"""Datasets as in-memory uint8 tensors (N, C, H, W) with integer class labels (-1 when unlabelled).

:func:`load` reads the dataset that ``params["prepare"]`` names and returns a :class:`Dataset`:
the train and test :class:`Split` s, the raw files it read (``prepare`` hashes them), the class
names and the unreadable images it skipped. Images stay uint8 end to end; training slices
batches from the tensor and scales them to [0, 1] on the fly.

- ``digits``: scikit-learn's bundled 8x8 digits (1,797 real images, no download),
  split into train/test with a seeded stratified split (``test_fraction``).
- ``mnist`` / ``fashion_mnist``: torchvision's loaders and official train/test splits,
  read from ``<root>/MNIST/raw`` or ``<root>/FashionMNIST/raw`` (idx files, .gz or unpacked).
- ``cifar10``: the python pickles of torchvision's layout ``<root>/cifar-10-batches-py/``
  (``data_batch_1..5``, ``test_batch``, ``batches.meta``), 32x32 RGB, official split.
- ``celeba``: ``<root>/celeba/img_align_celeba/*.jpg`` with ``list_eval_partition.txt``
  (train = partition 0, test = partition 2); each 178x218 image is cropped to its central
  128x128 face (rows 45:173, cols 25:153, as Dai & Wipf's TwoStageVAE code) and resized to
  ``image_size`` (default 64) with Pillow's antialiased bilinear filter. Unlabelled.
- ``folder``: every image Pillow reads under ``data_root`` (hidden files and folders
  skipped), centre-cropped to a square and resized to ``image_size`` (bicubic). Top-level
  subfolders are the classes when there are at least two; otherwise it is unlabelled.
  Seeded train/test split with ``test_fraction``, stratified where possible.

Where mnist, fashion_mnist, cifar10 or celeba files are absent, torchvision downloads
them (needs a network); ``BVAE_OFFLINE=1`` forbids that. ``limit_train`` / ``limit_test``
keep seeded random subsets, chosen before any image is decoded for celeba and folder.
``bad_images`` says what unreadable or truncated image files do: ``skip`` (listed in
:attr:`Dataset.skipped`) or ``fail``. More than PARALLEL_MIN image files are decoded in a
process pool of one worker per usable CPU, with the same result. ``channels`` converts: grey -> RGB
repeats the channel, RGB -> grey is Pillow's "L" (0.299 R + 0.587 G + 0.114 B).
``jpeg_quality`` (null: off) round-trips every train and test image through JPEG at that
quality, as both reference codes prepare CIFAR-10 (their published FIDs carry it).
"""

import hashlib
import itertools
import math
import os
import pickle
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline import PipelineError, memory
from pipeline.choices import DATASETS
from pipeline.timing import timed

PARALLEL_MIN = 500  # decode in a process pool when there are more image files than this
CELEBA_CROP = (25, 45, 153, 173)  # left, top, right, bottom: rows 45:173, cols 25:153 of the 178x218 images
CELEBA_SIZE = 64  # celeba's image_size when it is null
SHOW = 10  # names listed in messages about unreadable images


@dataclass
class Split:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,), -1 when unlabelled

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, n: int | None, seed: int) -> "Split":
        """A seeded random subset of ``n`` items (all of them when ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        idx = sample_indices(len(self), n, seed)
        return Split(self.images[idx], self.labels[idx])


@dataclass
class Dataset:
    train: Split
    test: Split
    files: list[Path]  # the raw files read, sorted (prepare hashes them)
    classes: list[str] | None  # class names; None when unlabelled (then every label is -1)
    skipped: list[tuple[str, str]]  # (path, reason) of unreadable images that were skipped


def sample_indices(n: int, k: int | None, seed: int) -> torch.Tensor:
    """Sorted indices of a seeded random choice of ``k`` of ``n`` items (all when ``k`` is None or >= n)."""
    if k is None or k >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k].sort().values


def offline() -> bool:
    """``BVAE_OFFLINE=1``: never try to download (the tests set it)."""
    return os.environ.get("BVAE_OFFLINE", "") not in ("", "0")


def load(cfg: dict) -> Dataset:
    """The dataset ``cfg["dataset"]`` (``cfg`` is ``params["prepare"]``), limited to
    ``limit_train`` / ``limit_test`` images (seeds ``seed`` and ``seed + 1``), resized to
    ``image_size`` and converted to ``channels``."""
    name, root, size, channels = cfg["dataset"], Path(cfg["data_root"]), cfg.get("image_size"), cfg.get("channels")
    bad_images, seed = cfg.get("bad_images", "skip"), cfg["seed"]
    limits = (cfg.get("limit_train"), cfg.get("limit_test"))
    if name not in DATASETS:
        raise PipelineError(f"prepare.dataset: unknown dataset '{name}' (choose one of {', '.join(DATASETS)})")
    if channels not in (None, 1, 3):
        raise PipelineError(f"prepare.channels: {channels!r} is not 1, 3 or null (the dataset's own)")
    if bad_images not in ("skip", "fail"):
        raise PipelineError(f"prepare.bad_images: {bad_images!r} is not skip or fail")
    if size is not None and (not isinstance(size, int) or size < 1):
        raise PipelineError(f"prepare.image_size: {size!r} is not a positive integer or null")
    if not 0 < cfg["test_fraction"] < 1:
        raise PipelineError(f"prepare.test_fraction: {cfg['test_fraction']!r} is not between 0 and 1")
    if size is not None:  # celeba and folder decode every image at this size: one must fit
        memory.check(4 * 3 * size * size, torch.device("cpu"), f"prepare.image_size: {size}: one {size} x {size} RGB "
                     "image in float32", "lower prepare.image_size")  # fmt: skip
    if name == "digits":
        ds = Dataset(*load_digits(cfg["test_fraction"], seed), [digits_file()], [str(d) for d in range(10)], [])
    elif name in ("mnist", "fashion_mnist"):
        ds = _load_idx(name, root)
    elif name == "cifar10":
        ds = load_cifar10(root)
    elif name == "celeba":
        ds = load_celeba(root, size or CELEBA_SIZE, limits, seed, bad_images)
    else:
        ds = load_folder(root, size, cfg["test_fraction"], limits, seed, bad_images)
    ds.train, ds.test = ds.train.subset(limits[0], seed), ds.test.subset(limits[1], seed + 1)
    if size is not None:
        n, c = len(ds.train) + len(ds.test), channels or ds.train.images.shape[1]
        memory.check(5 * n * c * size * size, torch.device("cpu"), f"prepare.image_size: {size}: {n:,} images of "
                     f"{c} x {size} x {size} (uint8, and float32 while resizing)",
                     "lower prepare.image_size, or prepare.limit_train / limit_test")  # fmt: skip
    for split in (ds.train, ds.test):
        split.images = to_channels(resize(split.images, size), channels)
        if cfg.get("jpeg_quality"):
            split.images = jpeg_roundtrip(split.images, cfg["jpeg_quality"])
    return ds


def jpeg_roundtrip(images: torch.Tensor, quality: int = 75) -> torch.Tensor:
    """uint8 images written as JPEG at ``quality`` (Pillow, 4:2:0 chroma subsampling for RGB)
    and decoded again. The references do this to CIFAR-10 before training and scoring
    (TwoStageVAE preprocess.py load_cifar10_data: scipy.misc.imsave / imread; BalancingVAE
    computed_gamma.py lines 43-56: imageio.imwrite / imread; both Pillow at its default
    quality 75)."""
    import io

    from PIL import Image

    from pipeline.utils import progress

    out = torch.empty_like(images)
    arrays = images.permute(0, 2, 3, 1).numpy()
    with progress(total=len(images), desc="jpeg round trip", unit="img", leave=False) as bar:
        for i, a in enumerate(arrays):
            buf = io.BytesIO()
            Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(buf, format="JPEG", quality=quality)
            decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
            out[i] = torch.from_numpy(decoded.reshape(a.shape).copy()).permute(2, 0, 1)
            bar.update(1)
    return out


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


# -- digits, mnist, fashion_mnist --


def digits_file() -> Path:
    """The file scikit-learn's ``load_digits`` reads (bundled with scikit-learn)."""
    from importlib.resources import files

    return Path(str(files("sklearn.datasets.data") / "digits.csv.gz"))


def load_digits(test_fraction: float, seed: int) -> tuple[Split, Split]:
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = torch.from_numpy(bunch.images).mul(255 / 16).round().clamp(0, 255).to(torch.uint8).unsqueeze(1)
    labels = torch.from_numpy(bunch.target).long()
    idx_train, idx_test = (torch.from_numpy(i) for i in _split_indices(labels.numpy(), test_fraction, seed, True))
    return Split(images[idx_train], labels[idx_train]), Split(images[idx_test], labels[idx_test])


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
            ds = _download(lambda t=train: cls(root=root, train=t, download=True), message, network)
        splits.append(Split(ds.data.unsqueeze(1).contiguous(), ds.targets.long()))
    return splits[0], splits[1]


def load_mnist(root: str) -> tuple[Split, Split]:
    from torchvision.datasets import MNIST

    return _load_torchvision(MNIST, "MNIST", root)


def load_fashion_mnist(root: str) -> tuple[Split, Split]:
    from torchvision.datasets import FashionMNIST

    return _load_torchvision(FashionMNIST, "FashionMNIST", root)


def _load_idx(name: str, root: Path) -> Dataset:
    """mnist or fashion_mnist as a Dataset; its files are the four unpacked idx files torchvision reads."""
    from torchvision.datasets import MNIST, FashionMNIST

    cls, folder = (MNIST, "MNIST") if name == "mnist" else (FashionMNIST, "FashionMNIST")
    train, test = _load_torchvision(cls, folder, str(root))
    files = sorted(root / folder / "raw" / Path(gz).stem for gz, _ in cls.resources)
    return Dataset(train, test, files, list(cls.classes), [])


def _download(fetch, message: str, network: bool = True):
    """Return ``fetch()`` (a torchvision download); a failure, or ``BVAE_OFFLINE`` when it needs
    the ``network``, becomes one PipelineError that starts with ``message``."""
    if network and offline():
        raise PipelineError(f"{message} (BVAE_OFFLINE is set, so nothing was downloaded)")
    try:
        return fetch()
    except Exception as e:  # network errors come in many types
        reason = " ".join(str(e).split())[:300]
        raise PipelineError(f"{message} (the download failed: {reason})") from None


# -- cifar10 --

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

        _download(lambda: CIFAR10(str(root), download=True), message)

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


# -- celeba --


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

        _download(lambda: CelebA(str(root), split="all", target_type=[], download=True), message)
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
    decoded, skipped = _decode_all(chosen[0] + chosen[1], partial(_decode_celeba, size=size), root, "celeba")
    _check_bad(skipped, bad_images)
    splits = []
    for arrays in (decoded[: len(chosen[0])], decoded[len(chosen[0]) :]):
        kept = [a for a in arrays if a is not None]
        splits.append(Split(_stack(kept, 3, size), torch.full((len(kept),), -1, dtype=torch.long)))
    return Dataset(splits[0], splits[1], sorted([partition] + chosen[0] + chosen[1]), None, skipped)


def _decode_celeba(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB").crop(CELEBA_CROP).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img).transpose(2, 0, 1)


# -- folder --


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
    paths, ignored = _list_images(root, set(extensions))
    if ignored:
        print(f"{root}: ignored {ignored} file(s) that are not images")
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
    idx = _split_indices(labels, test_fraction, seed, stratify=classes is not None)
    idx = [ix[sample_indices(len(ix), limit, s).numpy()] for ix, limit, s in zip(idx, limits, (seed, seed + 1))]
    chosen = np.concatenate(idx)
    decoded, skipped = _decode_all([paths[i] for i in chosen], partial(_decode_image, size=size), root, "images")
    _check_bad(skipped, bad_images)
    channels = max((a.shape[0] for a in decoded if a is not None), default=1)
    splits, start = [], 0
    for ix in idx:
        keep = [(a, labels[i]) for a, i in zip(decoded[start : start + len(ix)], ix) if a is not None]
        start += len(ix)
        splits.append(Split(_stack([a for a, _ in keep], channels, size), torch.tensor([y for _, y in keep]).long()))
    if not (len(splits[0]) and len(splits[1])):
        raise PipelineError(
            f"too few readable images in {root}: {len(chosen) - len(skipped)} of {len(chosen)} were readable, "
            f"{len(splits[0])} for training and {len(splits[1])} for testing; each split needs at least 1"
        )
    return Dataset(splits[0], splits[1], sorted(paths[i] for i in chosen), classes, skipped)


def _list_images(root: Path, extensions: set[str]) -> tuple[list[Path], int]:
    """The sorted image files under ``root`` (not hidden, not in hidden folders) and the number of other files."""
    images, others = [], 0
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if name.startswith("."):
                continue
            if Path(name).suffix.lower() in extensions:
                images.append(Path(folder) / name)
            else:
                others += 1
    return sorted(images), others


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


# -- shared --


def _split_indices(labels: np.ndarray, test_fraction: float, seed: int, stratify: bool):
    """Seeded train/test index arrays (each sorted); stratified by ``labels`` when asked and
    possible (every class has 2+ items and both sides can hold one of each)."""
    from sklearn.model_selection import train_test_split

    n_test = math.ceil(test_fraction * len(labels))  # scikit-learn's rule
    counts = np.unique(labels, return_counts=True)[1]
    possible = counts.min() >= 2 and min(n_test, len(labels) - n_test) >= len(counts)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)),
        test_size=test_fraction,
        random_state=seed,
        stratify=labels if stratify and possible else None,
    )
    return np.sort(idx_train), np.sort(idx_test)


def _decode_all(paths: list[Path], decode, root: Path, desc: str):
    """Decode every file with ``decode`` (in a process pool, in order, when there are more than
    PARALLEL_MIN); returns the arrays (None where unreadable) and the (path relative to ``root``,
    reason) of the unreadable ones."""
    from pipeline.utils import progress

    work = partial(_try_decode, decode)
    if len(paths) > PARALLEL_MIN:
        import multiprocessing

        from pipeline.speed import available_cpus

        workers = available_cpus()
        with multiprocessing.Pool(workers) as pool:
            chunk = max(1, min(64, len(paths) // (4 * workers)))
            results = list(progress(pool.imap(work, paths, chunksize=chunk), total=len(paths), desc=desc, unit="img"))
    else:
        results = [work(p) for p in progress(paths, desc=desc, unit="img")]
    skipped = [(os.path.relpath(p, root), reason) for p, (_, reason) in zip(paths, results) if reason]
    return [array for array, _ in results], skipped


def _try_decode(decode, path: Path) -> tuple[np.ndarray | None, str | None]:
    try:
        return decode(path), None
    except Exception as e:  # whatever a broken file makes Pillow raise
        return None, " ".join(f"{type(e).__name__}: {e}".split())[:200]


def _stack(arrays: list[np.ndarray], channels: int, size: int) -> torch.Tensor:
    """(C, H, W) uint8 arrays as one (N, channels, H, W) tensor; grey ones repeated to RGB."""
    if not arrays:
        return torch.zeros((0, channels, size, size), dtype=torch.uint8)
    return torch.from_numpy(np.stack([np.repeat(a, channels // a.shape[0], axis=0) for a in arrays]))


def describe_skipped(skipped: list[tuple[str, str]]) -> str:
    """'N unreadable image(s): a.png (reason), ... and M more' (the first SHOW of them)."""
    shown = ", ".join(f"{path} ({reason})" for path, reason in skipped[:SHOW])
    more = f" and {len(skipped) - SHOW} more" if len(skipped) > SHOW else ""
    return f"{len(skipped)} unreadable image(s): {shown}{more}"


def _check_bad(skipped: list[tuple[str, str]], bad_images: str) -> None:
    if skipped and bad_images == "fail":
        raise PipelineError(f"{describe_skipped(skipped)}. Fix or remove them, or set prepare.bad_images: skip")


def resize(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Resize uint8 images to ``size`` x ``size`` (antialiased bilinear); ``None`` keeps them."""
    if size is None or tuple(images.shape[-2:]) == (size, size):
        return images
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def to_channels(images: torch.Tensor, channels: int | None) -> torch.Tensor:
    """uint8 images with ``channels`` channels (None keeps them). Grey -> RGB repeats the channel;
    RGB -> grey is Pillow's "L": (19595 R + 38470 G + 7471 B + 2^15) >> 16, i.e. 0.299 R + 0.587 G + 0.114 B."""
    if channels is None or images.shape[1] == channels:
        return images
    if channels == 3:
        return images.repeat(1, 3, 1, 1)
    weights = torch.tensor([19595, 38470, 7471], dtype=torch.int32).view(1, 3, 1, 1)
    chunks = [((c.int() * weights).sum(1, keepdim=True) + 2**15) >> 16 for c in images.split(4096)]
    return torch.cat(chunks).to(torch.uint8) if chunks else images[:, :1]


def checksum(*tensors: torch.Tensor) -> str:
    """sha256 over the raw bytes of tensors: identifies the exact prepared data."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def content_hash(files, root) -> str:
    """sha256 identifying raw files: for each file, in sorted order of its path relative to
    ``root``, that path (posix, UTF-8), a NUL byte and the sha256 of its bytes."""
    h = hashlib.sha256()
    for rel, path in sorted((Path(os.path.relpath(f, root)).as_posix(), f) for f in files):
        h.update(rel.encode() + b"\0")
        with open(path, "rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()


@timed("io")
def save_split(split: Split, path) -> None:
    from pipeline.utils import save_torch

    save_torch({"images": split.images, "labels": split.labels}, path)
