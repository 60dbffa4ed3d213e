"""Evaluation cost: seconds per sampler for N samples with the domain features, and the
saving from cached real-image statistics, on this machine.

    .venv/bin/python bench/eval_cost.py [--num 10000] [--mnist-root data/raw]

Timing does not depend on trained weights, so the models are MNIST-shaped (28x28,
latent 16, stage 2 of width 512) with their initial weights; the real images are the
MNIST test set when its files are under --mnist-root (else random images of that
shape). Each sampler runs the evaluate stage's path: latents -> stage-1 decoder ->
domain features -> FID, KID, precision/recall. "Cached" loads the saved real features
(what the evaluate stage does); "recomputed" pushes the real images through the
feature network again (what a pipeline without the reference stage would do).
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from pipeline.config.choices import SAMPLERS
from pipeline.evaluation import sampling
from pipeline.evaluation.classifier import DomainClassifier
from pipeline.evaluation.features import DomainFeatures, fidelity_metrics, statistics
from pipeline.evaluation.gmm import fit_gmm
from pipeline.files import save_torch
from pipeline.hardware.threads import set_threads
from pipeline.models import ConvVAE, DenseVAE


def real_images(root: str, n: int) -> tuple[torch.Tensor, str]:
    try:
        from pipeline.data.mnist import load_mnist

        return load_mnist(root)[1].images[:n], "MNIST test set"
    except Exception:
        return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8), "random 28x28 images"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=10000, help="samples per sampler (and real images)")
    ap.add_argument("--mnist-root", default="data/raw")
    ap.add_argument("--threads", default="all", help="as params.yaml's threads: all, a number or adaptive")
    args = ap.parse_args()
    set_threads(int(args.threads) if args.threads.isdigit() else args.threads)
    torch.manual_seed(0)
    device = torch.device("cpu")
    real, source = real_images(args.mnist_root, args.num)
    vae, stage2 = ConvVAE(1, 28, 16).eval(), DenseVAE(16, width=512, depth=3).eval()
    gmm = fit_gmm(torch.randn(2000, 16), 10, "full", 0)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "classifier.pt"
        save_torch(
            {
                "config": {"channels": 1, "num_classes": 10, "feature_dim": 64},
                "state_dict": DomainClassifier(1, 10, 64).state_dict(),
            },
            ckpt,
        )
        space = DomainFeatures(ckpt, device)

        t0 = time.perf_counter()
        real_features = space.extract(real, "real")
        real_stats = statistics(real_features)
        recompute = time.perf_counter() - t0
        cache = Path(tmp) / "real_stats.pt"
        save_torch({"space": "domain", "features": real_features}, cache)
        t0 = time.perf_counter()
        cached_features = torch.load(cache, weights_only=True)["features"]
        statistics(cached_features)
        cached = time.perf_counter() - t0

        print(
            f"{torch.get_num_threads()} CPU threads; {args.num:,} samples per sampler vs {len(real):,} real ({source})"
        )
        print(f"{'sampler':14s} {'sample+decode s':>15s} {'features s':>11s} {'metrics s':>10s} {'total s':>8s}")
        kw = {"latent_dim": 16, "stage2": stage2, "gamma_z": 0.5, "gmm": gmm}
        for name in ("rec", *SAMPLERS):
            t0 = time.perf_counter()
            images = (
                sampling.reconstruct(vae, real)
                if name == "rec"
                else sampling.decode(vae, sampling.latents(name, args.num, 1, **kw))
            )
            t1 = time.perf_counter()
            feats = space.extract(images, name)
            t2 = time.perf_counter()
            fidelity_metrics(feats, real_features, real_stats)
            t3 = time.perf_counter()
            print(f"{name:14s} {t1 - t0:15.1f} {t2 - t1:11.1f} {t3 - t2:10.1f} {t3 - t0:8.1f}")
        print(
            f"real statistics: recomputed {recompute:.2f} s, cached {cached:.3f} s -> cached is {recompute / cached:.0f}x faster"
        )


if __name__ == "__main__":
    main()
