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
