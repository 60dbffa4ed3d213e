"""Where a second CPU thread pays, and whether it changes the numbers: training-step time
with 1 thread and with every usable CPU, for the models of the default run and of
docs/results.md's set-up, quiet and beside busy processes.

    .venv/bin/python bench/threads.py [--steps 30] [--busy 0,1] [--models default]

Each model trains ``--steps`` steps (after 5 warm-up steps) under the running-gamma
balance as the stages run it (bf16 autocast where ``precision: auto`` gives it), once per
thread count, alternating in the same process so that both see the same machine; for each
count in ``--busy``, that many other processes spin meanwhile (a machine shared with other
work). Prints the step's FLOPs (torch's FlopCounterMode, forward and backward), ms per step
at each thread count and the ratio (1-thread time / N-thread time: above 1, the threads
pay), and whether N threads give the same parameters as 1 after the same steps, bit for
bit. docs/speed.md has the table and the thread plan it led to.
"""

import argparse
import copy
import subprocess
import sys
import time

import torch

from pipeline.balance import build_balance
from pipeline.evaluation.classifier import DomainClassifier
from pipeline.hardware.device import Speed
from pipeline.hardware.threads import available_cpus
from pipeline.models import ConvVAE, DenseVAE
from pipeline.training.loop import as_input

BALANCE = {"strategy": "running_gamma", "momentum": 0.99, "min_clamp": True, "k": 1.0}


def images(n: int, side: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def models(which: str):
    """(name, model, batch, precision): the default run's models, then docs/results.md's."""
    yield "default: train_vae, conv 8x8, batch 64", ConvVAE(1, 8, 8), images(64, 8), "auto"
    yield "default: train_stage2, dense 256, batch 128", DenseVAE(8, width=256, depth=3), torch.randn(128, 8), "fp32"
    yield "default: classifier 8x8, batch 64", DomainClassifier(1, 10, 64), images(64, 8), "fp32"
    if which == "all":
        yield "results: train_vae, conv 28x28, batch 100", ConvVAE(1, 28, 16), images(100, 28), "auto"
        yield (
            "results: train_stage2, dense 512, batch 100",
            DenseVAE(16, width=512, depth=3),
            torch.randn(100, 16),
            "fp32",
        )
        yield "results: classifier 28x28, batch 64", DomainClassifier(1, 10, 64), images(64, 28), "fp32"


def step_fn(model, x, precision: str):
    """One optimisation step of ``model`` on ``x`` (a VAE under the balance, or the classifier)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = as_input(x)
    bf16 = Speed.resolve(precision, False, torch.device("cpu"), images=x.dim() == 4).bf16
    if isinstance(model, DomainClassifier):
        y = torch.arange(len(x)) % 10

        def loss():
            return torch.nn.functional.cross_entropy(model(x), y)
    else:
        balance = build_balance(BALANCE, "bench")

        def loss():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                x_hat, mu, logvar = model(x)
            return balance(x, x_hat.float(), mu.float(), logvar.float()).loss

    def step():
        opt.zero_grad()
        loss().backward()
        opt.step()

    return step


def step_flops(model, x, precision: str) -> float:
    """FLOPs of one training step (forward and backward), as torch counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    step = step_fn(copy.deepcopy(model), x, precision)
    with torch.random.fork_rng(devices=[]), FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def ms_per_step(model, x, precision: str, threads: int, steps: int) -> tuple[float, torch.Tensor]:
    """ms per step of a copy of ``model``, and its parameters after the 5 + ``steps`` steps."""
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # as the stages run (pipeline/hardware/threads.py)
    torch.manual_seed(0)
    copy_ = copy.deepcopy(model)
    step = step_fn(copy_, x, precision)
    for _ in range(5):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    ms = 1000 * (time.perf_counter() - t0) / steps
    return ms, torch.cat([p.detach().flatten() for p in copy_.parameters()])


def table(steps: int, busy: int, which: str) -> None:
    cpus = available_cpus()
    print(f"\n{cpus} usable CPUs, {busy} other busy process{'es' if busy != 1 else ''}")
    print(f"{'model':46s} {'MFLOP':>7s} {'1 thread':>9s} {f'{cpus} threads':>10s} {'ratio':>6s}  same numbers")
    for name, model, x, precision in models(which):
        one, many = [], []
        for _ in range(2):  # alternating: both counts see the same machine
            t1, p1 = ms_per_step(model, x, precision, 1, steps)
            tn, pn = ms_per_step(model, x, precision, cpus, steps)
            one.append(t1)
            many.append(tn)
        same = "yes" if torch.equal(p1, pn) else f"no (max diff {float((p1 - pn).abs().max()):.2g})"
        flops = step_flops(model, x, precision) / 1e6
        print(f"{name:46s} {flops:7.0f} {min(one):7.2f}ms {min(many):8.2f}ms {min(one) / min(many):5.2f}x  {same}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--busy", default="0,1", help="comma-separated counts of other busy processes, one table each")
    ap.add_argument("--models", choices=("default", "all"), default="all", help="the default run's models, or all")
    args = ap.parse_args()
    for busy in [int(b) for b in args.busy.split(",")]:
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        try:
            table(args.steps, busy, args.models)
        finally:
            for p in spinners:
                p.kill()


if __name__ == "__main__":
    main()
