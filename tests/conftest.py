"""Shared helpers: a throwaway copy of the project as its own git + DVC repo, tiny params,
and generated dataset files in their real on-disk formats (idx, CIFAR-10 pickles, JPEG, PNG, ...)."""

import os
import pickle
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# A pipeline that runs in seconds: small subsets, few epochs.
TINY = {
    "prepare": {"limit_train": 300, "limit_test": 60},
    "reference": {"classifier": {"epochs": 2}},
    "train": {"epochs": 3, "grid_every": 2, "checkpoint_every": 1},  # the fault tests wait for per-epoch checkpoints
    "stage2": {"epochs": 3, "width": 32, "checkpoint_every": 1},
    "evaluate": {"num_samples": 60},
}


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


HOOKS_PATH = str(ROOT / "tests" / "hooks")  # on PYTHONPATH: the training loop's fault hooks (its sitecustomize.py)


def tool_env(**extra) -> dict:
    """The environment for stage and DVC subprocesses: this venv first on PATH, default MLflow store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BVAE_", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run(cmd: list[str], cwd: Path, check: bool = True, **env) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=tool_env(**env), capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def make_project(dst: Path, params: dict) -> Path:
    """Copy the project's files (tracked and untracked-but-not-ignored) into ``dst``,
    apply ``params`` over params.yaml and commit it as a fresh git repo."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    (dst / "params.yaml").write_text(yaml.safe_dump(merge(base, params), sort_keys=False))
    for cmd in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "test@example.com"],
        ["git", "config", "user.name", "test"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "test project"],
    ):
        subprocess.run(cmd, cwd=dst, check=True, capture_output=True)
    return dst


def queued_names(said: str) -> list[str]:
    """The experiments a `dvc exp run --queue` queued, from what it printed."""
    return re.findall(r"Queued experiment '([^']+)'", said)


def queue_status(project: Path, *names: str, **env) -> dict[str, str]:
    """`dvc queue status` as {experiment name: status}, read again while one of ``names`` is
    missing: it lists the running tasks, then the queued ones (dvc/repo/experiments/queue/
    base.py:202-209 in dvc 3), so a task a worker takes between the two reads is in neither."""
    deadline = time.time() + 60
    while True:
        table = run(["dvc", "queue", "status"], project, **env).stdout.split("\n\n")[0]  # then "Worker status: ..."
        status = {p[1]: p[-1] for p in (line.split() for line in table.splitlines()[1:]) if len(p) >= 4}
        if all(name in status for name in names):
            return status
        assert time.time() < deadline, (names, status)


def wait_for_queue(project: Path, names: list[str], timeout: float, **env) -> dict[str, str]:
    """Poll `dvc queue status` until each of ``names`` has ended (not queued or running);
    returns the last status."""
    assert names, "no experiment to wait for"
    deadline = time.time() + timeout
    while True:
        status = queue_status(project, *names, **env)
        if not {"Queued", "Running"} & {status[n] for n in names} or time.time() > deadline:
            return status
        time.sleep(3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tiny_project(tmp_path) -> Path:
    return make_project(tmp_path / "project", TINY)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an array in the MNIST idx format (big-endian header: magic, dims; then uint8 data)."""
    header = struct.pack(">I", 0x800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_fake_mnist(root: Path, folder: str = "MNIST", n_train: int = 40, n_test: int = 20, seed: int = 0):
    """Unpacked MNIST-format files under <root>/<folder>/raw, as torchvision leaves them after download."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(root / folder / "raw" / f"{prefix}-images-idx3-ubyte", images)
        write_idx(root / folder / "raw" / f"{prefix}-labels-idx1-ubyte", labels)
        arrays[prefix] = (images, labels)
    return arrays


@pytest.fixture(scope="session")
def random_inception_weights(tmp_path_factory) -> Path:
    """A randomly initialised Inception-v3 state dict with the exact keys and shapes of the real
    weights file: the Inception code path runs for real, its numbers mean nothing."""
    import torch
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    path = tmp_path_factory.mktemp("weights") / "inception-random.pth"
    with pytest.MonkeyPatch.context() as mp:  # build the network without fetching or loading weights
        mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None)
        torch.manual_seed(0)
        model = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(model.state_dict(), path)
    return path


def write_fake_cifar10(root: Path, n_per_batch: int = 3, n_test: int = 4, seed: int = 0) -> dict:
    """torchvision's CIFAR-10 layout <root>/cifar-10-batches-py/: five training batches, test_batch and
    batches.meta, python pickles with b"data" (uint8 N x 3072, channel-major) and b"labels"."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    out = {"train": [], "test": []}
    for name, n in [(f"data_batch_{i}", n_per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        batch = {b"batch_label": name.encode(), b"data": images.reshape(n, 3072), b"labels": labels}
        (folder / name).write_bytes(pickle.dumps(batch))
        out["test" if name == "test_batch" else "train"].append((images, labels))
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    meta = {b"num_cases_per_batch": n_per_batch, b"label_names": [c.encode() for c in classes]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return {k: (np.concatenate([i for i, _ in v]), np.concatenate([y for _, y in v])) for k, v in out.items()}


CELEBA_FACE = (200, 40, 40)  # the colour of the 128x128 crop region in write_fake_celeba's images
CELEBA_BACKGROUND = (30, 60, 220)  # the colour outside it


def write_fake_celeba(root: Path, partitions: list[int]) -> list[str]:
    """torchvision's CelebA layout: <root>/celeba/img_align_celeba/NNNNNN.jpg (178x218, the
    crop region rows 45:173, cols 25:153 painted CELEBA_FACE, the rest CELEBA_BACKGROUND) and
    <root>/celeba/list_eval_partition.txt with one "<name> <partition>" line per image."""
    from PIL import Image

    folder = root / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{i:06d}.jpg" for i in range(1, len(partitions) + 1)]
    for name in names:
        img = Image.new("RGB", (178, 218), CELEBA_BACKGROUND)
        img.paste(CELEBA_FACE, (25, 45, 153, 173))
        img.save(folder / name, quality=100, subsampling=0)
    lines = [f"{name} {part}" for name, part in zip(names, partitions)]
    (root / "celeba" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return names


def save_image(path: Path, img, **save_kwargs) -> Path:
    """Save a PIL image (creating the folder); the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **save_kwargs)
    return path


def write_truncated_jpeg(path: Path, size=(40, 30)) -> Path:
    """A valid JPEG cut to half its bytes: Pillow opens it, but decoding fails."""
    from PIL import Image

    rng = np.random.default_rng(1)
    save_image(path, Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def write_mixed_folder(root: Path) -> None:
    """An image folder with two classes (cats, dogs) in every common mode and format, of
    different sizes and aspect ratios, plus broken and non-image files:

    cats/: rgb.png (RGB 40x30, red), grey.jpg (L 30x50), rgba.png (RGBA, fully transparent),
    palette.png (P, left half transparent, right half blue), deep/grey16.png (I;16: 32896, 257 * 128)
    dogs/: photo.webp (RGB 64x64), cmyk.jpg (CMYK), rotated.png (20x10, left half red, right half
    blue, EXIF orientation 6: shown rotated 90 degrees clockwise), tiny.bmp (RGB 5x5), broken.png
    (random bytes), cut.jpg (truncated), notes.txt, .hidden.png, .cache/x.png."""
    from PIL import Image

    rng = np.random.default_rng(0)
    cats, dogs = root / "cats", root / "dogs"
    save_image(cats / "rgb.png", Image.new("RGB", (40, 30), (255, 0, 0)))
    save_image(cats / "grey.jpg", Image.fromarray(rng.integers(0, 256, (50, 30), dtype=np.uint8)))
    save_image(cats / "rgba.png", Image.new("RGBA", (30, 30), (0, 0, 0, 0)))
    palette = Image.new("P", (20, 20), 0)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.paste(1, (10, 0, 20, 20))
    save_image(cats / "palette.png", palette, transparency=0)
    save_image(cats / "deep" / "grey16.png", Image.fromarray(np.full((16, 24), 32896, dtype=np.uint16)))
    save_image(dogs / "photo.webp", Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    save_image(dogs / "cmyk.jpg", Image.new("CMYK", (24, 24), (0, 255, 255, 0)))
    rotated = Image.new("RGB", (20, 10), (255, 0, 0))
    rotated.paste((0, 0, 255), (10, 0, 20, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    save_image(dogs / "rotated.png", rotated, exif=exif)
    save_image(dogs / "tiny.bmp", Image.new("RGB", (5, 5), (0, 255, 0)))
    (dogs / "broken.png").write_bytes(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
    write_truncated_jpeg(dogs / "cut.jpg")
    (dogs / "notes.txt").write_text("not an image")
    save_image(dogs / ".hidden.png", Image.new("RGB", (8, 8)))
    save_image(dogs / ".cache" / "x.png", Image.new("RGB", (8, 8)))
