"""torch.optim.Adam's three updates on the default run's real training steps: the single-tensor
loop (the baseline), the multi-tensor ``foreach`` and the ``fused`` kernel.

    .venv/bin/python bench/optimiser.py [--epochs 6] [--repeats 3] [--threads 1]

For stage 1 (the conv VAE on the digits, 8x8, as ``precision: auto`` runs it) and stage 2
(the dense VAE, width 256, on 8-dimensional codes), with the default params: each update
trains a copy of one initialisation with :func:`pipeline.training.loop.fit`, ``--repeats``
times, alternating; prints the best ms per step (the first epoch, a warm-up, left out) and
its ratio to the single-tensor update's. docs/speed.md#the-optimiser has the table; the
loop uses the fastest (:func:`pipeline.training.loop.adam`).
"""

import argparse
import copy
from pathlib import Path

import torch
import yaml

from pipeline.balance import build_balance
from pipeline.data.digits import load_digits
from pipeline.hardware.device import Speed
from pipeline.models import build_stage1, build_stage2
from pipeline.training import loop

KINDS = {"single": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def adam_of(kind: str):
    """:func:`pipeline.training.loop.adam` with the update ``kind``."""

    def adam(model, balance, lr):
        groups = [{"params": list(model.parameters())}]
        if own := list(balance.parameters()):
            groups.append({"params": own, "lr": lr * balance.lr_factor})
        return torch.optim.Adam(groups, lr=lr, **KINDS[kind])

    return adam


def ms_per_step(model, data, cfg: dict, speed: Speed, kind: str, epochs: int) -> float:
    seconds = []
    adam, loop.adam = loop.adam, adam_of(kind)
    try:
        loop.fit(
            copy.deepcopy(model),
            build_balance(cfg["balance"]),
            lambda epoch: data,
            loop.Settings(epochs=epochs, batch_size=cfg["batch_size"], lr=cfg["lr"], speed=speed),
            on_epoch=lambda row, timing, latent: seconds.append(timing["epoch_seconds"]),
        )
    finally:
        loop.adam = adam
    steps = -(-len(data) // cfg["batch_size"])
    return 1000 * sum(seconds[1:]) / ((epochs - 1) * steps)


def main(epochs: int, repeats: int, threads: int) -> None:
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # as the stages run (pipeline/hardware/threads.py)
    params = yaml.safe_load(Path("params.yaml").read_text())
    train, _ = load_digits(params["prepare"]["test_fraction"], params["prepare"]["seed"])
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    cfg1, cfg2 = params["train"] | {"latent_dim": 8}, params["stage2"]
    stages = {
        "stage 1 (conv, digits 8x8)": (
            build_stage1(cfg1, 1, 8),
            train.images,
            cfg1,
            Speed.resolve("auto", False, cpu, True),
        ),
        "stage 2 (dense, width 256)": (build_stage2(cfg2, 8), torch.randn(len(train.images), 8), cfg2, Speed()),
    }
    best = {}
    for _ in range(repeats):
        for name, (model, data, cfg, speed) in stages.items():
            for kind in KINDS:
                ms = ms_per_step(model, data, cfg, speed, kind, epochs)
                best[name, kind] = min(best.get((name, kind), float("inf")), ms)
    print(f"{threads} thread(s); best of {repeats}, ms per step (ratio: single-tensor time / this one's)")
    for name in stages:
        row = "  ".join(
            f"{kind} {best[name, kind]:.3f} ({best[name, 'single'] / best[name, kind]:.2f}x)" for kind in KINDS
        )
        print(f"{name:28s} {row}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6, help="epochs per timing (the first is a warm-up)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    main(args.epochs, args.repeats, args.threads)
