"""Likelihood cost: seconds for the test-set ELBO / IWAE bounds (stage 1 and two-stage) of
the evaluate stage, against one reconstruction pass of the same images (the baseline).

    .venv/bin/python bench/likelihood_cost.py [--images 10000] [--samples 100] [--prior-samples 8]
                                              [--preset quick|mnist] [--mnist-root data/raw]

Timing does not depend on trained weights, so the models have their initial weights, in
the shapes of a preset: ``quick`` (the conv VAE, latent 16, stage 2 of width 512) or
``mnist`` (the reference InfoGAN network, latent 64, stage 2 of width 1024). The images are
the MNIST test set when its files are under --mnist-root (else random 28x28 images).
"""

import argparse
import time

import torch
from eval_cost import real_images  # bench/ is on sys.path when run as a script

from pipeline.evaluation import likelihood, sampling
from pipeline.hardware.threads import set_threads
from pipeline.models import ConvVAE, DenseVAE, InfoGAN

PRESETS = {  # stage 1, stage 2
    "quick": (lambda: ConvVAE(1, 28, 16), lambda: DenseVAE(16, width=512, depth=3)),
    "mnist": (lambda: InfoGAN(1, 28, 64), lambda: DenseVAE(64, width=1024, depth=3)),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--samples", type=int, default=100, help="importance samples per image (evaluate.nll_samples)")
    ap.add_argument("--prior-samples", type=int, default=8, help="inner samples per code (evaluate.nll_prior_samples)")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    ap.add_argument("--mnist-root", default="data/raw")
    ap.add_argument("--threads", default="all", help="as params.yaml's threads: all, a number or adaptive")
    args = ap.parse_args()
    set_threads(int(args.threads) if args.threads.isdigit() else args.threads)
    torch.manual_seed(0)
    images, source = real_images(args.mnist_root, args.images)
    vae, stage2 = (make().eval() for make in PRESETS[args.preset])
    print(
        f"{torch.get_num_threads()} CPU threads; {len(images):,} {source}; preset {args.preset}; "
        f"{args.samples} importance samples, {args.prior_samples} inner samples"
    )

    t0 = time.perf_counter()
    sampling.reconstruct(vae, images)
    rec = time.perf_counter() - t0
    y = likelihood.dequantise(images, torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    draws = likelihood.draw(vae, y, args.samples, 0, stage2=stage2, gamma_z=0.5, prior_samples=args.prior_samples)
    likelihood.likelihood_metrics(draws, 0.1, two_stage=True)
    nll = time.perf_counter() - t0
    print(f"baseline, one reconstruction pass: {rec:8.2f} s ({len(images) / rec:,.0f} img/s)")
    print(
        f"likelihood, both bounds and models: {nll:8.2f} s ({len(images) / nll:,.1f} img/s) = {nll / rec:.0f}x the baseline"
    )


if __name__ == "__main__":
    main()
