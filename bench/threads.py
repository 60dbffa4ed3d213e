"""Where several CPU threads start to pay: training-step time with 1 thread and with all
usable CPUs, for models from tiny to large, against their FLOPs per step.

    .venv/bin/python bench/threads.py [--steps 30] [--busy 1]

Each model trains ``--steps`` steps (after 5 warm-up steps) under the running-gamma
balance, once per thread count, alternating in the same process so that both see the
same machine; ``--busy N`` keeps N other processes spinning meanwhile (a machine
shared with other work). Prints the step's FLOPs (:func:`pipeline.hardware.threads.step_flops`), ms per step
at each thread count and the ratio (1 thread = 1.00x). :data:`pipeline.hardware.threads.MIN_FLOPS_PER_THREAD`
is set from where the ratio passes 1.3x on a quiet machine (docs/speed.md).
"""

import argparse
import subprocess
import sys
import time

import torch

from pipeline.balance import build_balance
from pipeline.evaluation.classifier import DomainClassifier
from pipeline.hardware.threads import available_cpus, step_flops
from pipeline.models import ConvVAE, DenseVAE, InfoGAN
from pipeline.training.adam import Adam
from pipeline.training.loop import as_input

BALANCE = {"strategy": "running_gamma", "momentum": 0.99, "min_clamp": True, "k": 1.0}


def models():
    """(name, model, batch): the default run's models, then larger ones."""
    yield "stage 2, dense width 64 (latent 8)", DenseVAE(8, 64, 3), torch.randn(128, 8)
    yield "stage 2, dense width 128", DenseVAE(8, 128, 3), torch.randn(128, 8)
    yield "stage 2, dense width 256 (default run)", DenseVAE(8, 256, 3), torch.randn(128, 8)
    yield "stage 2, dense width 1024 (presets)", DenseVAE(64, 1024, 3), torch.randn(128, 64)
    yield "stage 1, conv 8x8 (default run)", ConvVAE(1, 8, 8), torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8)
    yield "stage 1, conv 28x28", ConvVAE(1, 28, 16), torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    yield (
        "stage 1, infogan 28x28 (mnist preset)",
        InfoGAN(1, 28, 16),
        torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8),
    )
    yield (
        "domain classifier 8x8 (default run)",
        DomainClassifier(1, 10, 64),
        torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8),
    )


def step_fn(model, x):
    """One optimisation step of ``model`` on ``x`` (a VAE under the balance, or the classifier)."""
    opt = Adam(model.parameters(), lr=1e-4)
    x = as_input(x)
    if isinstance(model, DomainClassifier):
        y = torch.randint(0, 10, (len(x),))

        def loss():
            return torch.nn.functional.cross_entropy(model(x), y)
    else:
        balance = build_balance(BALANCE, "bench")

        def loss():
            return balance(x, *model(x)).loss

    def step():
        opt.zero_grad()
        loss().backward()
        opt.step()

    return step


def ms_per_step(step, threads: int, steps: int) -> float:
    torch.set_num_threads(threads)
    for _ in range(5):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return 1000 * (time.perf_counter() - t0) / steps


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument(
        "--busy", type=int, default=0, help="keep this many other processes spinning meanwhile (a shared machine)"
    )
    args = ap.parse_args()
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        table(args.steps, args.busy)
    finally:
        for p in spinners:
            p.kill()


def table(steps: int, busy: int) -> None:
    cpus = available_cpus()
    torch.manual_seed(0)
    print(f"{cpus} usable CPUs, {busy} other busy processes")
    print(f"{'model':42s} {'FLOPs/step':>11s} {'1 thread':>10s} {f'{cpus} threads':>11s} {'ratio':>7s}")
    for name, model, x in models():
        step = step_fn(model, x)
        one = min(ms_per_step(step, 1, steps) for _ in range(2))
        many = min(ms_per_step(step, cpus, steps) for _ in range(2))
        print(f"{name:42s} {step_flops(model, x) / 1e6:9.1f} M {one:8.2f}ms {many:9.2f}ms {one / many:6.2f}x")


if __name__ == "__main__":
    main()
