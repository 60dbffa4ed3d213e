"""Where every stage reads and writes: the output layout (mirrors dvc.yaml)."""

from pathlib import Path

PREPARED = Path("data/prepared")
CLASSIFIER = Path("models/classifier.pt")
REFERENCE = Path("reference/real_stats.pt")
VAE = Path("models/vae.pt")
STAGE2 = Path("models/stage2.pt")
GMM = Path("models/gmm.pt")
CHECKPOINTS = Path("checkpoints")
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
