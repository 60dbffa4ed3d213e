"""Where every stage reads and writes: the output layout (mirrors dvc.yaml)."""

from pathlib import Path

PREPARED = Path("data/prepared")
CLASSIFIER = Path("models/classifier.pt")
REFERENCE = Path("reference/real_stats.pt")
VAE = Path("models/vae.pt")
STAGE2 = Path("models/stage2.pt")
GMM = Path("models/gmm.pt")


def _checkpoints() -> Path:
    """Where the training stages keep their resumable state: checkpoints/, except in a DVC
    experiment that runs in a temporary copy (`dvc exp run --queue` or `--temp`, in
    <repo>/.dvc/tmp/exps/<copy>/, which DVC leaves behind when its worker is killed and
    does not reuse): there <repo>/checkpoints/exps/<hash of the copy's params.yaml>/, so the
    same experiment queued again resumes the training instead of starting over."""
    import hashlib

    here = Path.cwd()
    if here.parent.parts[-3:] != (".dvc", "tmp", "exps") or not Path("params.yaml").is_file():
        return Path("checkpoints")
    key = hashlib.sha256(Path("params.yaml").read_bytes()).hexdigest()[:16]
    return here.parents[3] / "checkpoints" / "exps" / key


CHECKPOINTS = _checkpoints()
METRICS = Path("metrics")
PLOTS = Path("plots")

PRODUCER = {
    PREPARED: "prepare",
    CLASSIFIER: "reference",
    REFERENCE.parent: "reference",
    VAE: "train_vae",
    STAGE2: "train_stage2",
    GMM: "train_stage2",
}


def producer(path: Path) -> str | None:
    """The DVC stage that writes ``path`` (a file, or a file in an output folder)."""
    return PRODUCER.get(path) or PRODUCER.get(path.parent)
