"""Training speed of the MNIST preset: this pipeline's loop against a plain DataLoader loop.

    .venv/bin/python bench/train_speed.py [--preset mnist] [--images 5000] [--epochs 2] [--compile]

Every variant trains a fresh copy of the preset's stage-1 model (same seed, same
running-gamma loss, Adam, the preset's batch size) for ``--epochs`` epochs over the same
``--images`` MNIST training images (the real files when they are under --data-root,
else random images of that shape: speed does not depend on content) and reports the
last epoch, after warm-up:

- ``plain DataLoader loop``: the baseline a user would write: float images in a
  ``TensorDataset``, ``DataLoader(shuffle=True)``, fp32, ``loss.item()`` every step;
- ``pipeline loop, fp32``: :func:`pipeline.training.loop.fit` with batches sliced from one
  in-memory uint8 tensor, no per-step host sync, fp32;
- ``pipeline loop``: the same with the settings ``precision: auto`` picks on this
  device (bf16 autocast where the hardware computes bf16 natively, channels_last),
  i.e. what `dvc repro` runs;
- ``+ torch.compile`` with ``--compile``.

Prints images/s, the epoch time projected to the full 60,000-image MNIST epoch, and
each variant's ratio to the baseline; the model's training FLOPs per image (counted
with torch.utils.flop_counter) give the achieved TFLOP/s, and on a GPU of known peak
the share of the peak bf16 dense throughput. ``--out`` writes the results as JSON.
"""

import argparse
import json
import time
from pathlib import Path

import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from pipeline.balance import build_balance
from pipeline.hardware.device import Speed, pick_device
from pipeline.hardware.threads import set_threads
from pipeline.models import build_stage1
from pipeline.training.loop import Settings, fit

ROOT = Path(__file__).resolve().parents[1]
MNIST_TRAIN = 60000
PEAK_BF16_TFLOPS = {
    "H200": 989.4,
    "H100 SXM": 989.4,
    "H100 80GB HBM3": 989.4,
    "H100 PCIe": 756.0,
    "H100": 756.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 70.0,
    "RTX 4090": 165.2,
}


def images(root: str, n: int) -> tuple[torch.Tensor, str]:
    from pipeline.data.mnist import load_mnist

    try:
        return load_mnist(root)[0].images[:n], f"MNIST training images ({root})"
    except Exception:
        return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8), "random 28x28 images (no MNIST files found)"


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_loop(model, balance, data: torch.Tensor, epochs: int, batch_size: int, lr: float, device) -> float:
    """The baseline; returns the last epoch's seconds."""
    loader = DataLoader(TensorDataset(data.float() / 255), batch_size=batch_size, shuffle=True)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        sync(device)
        t0 = time.perf_counter()
        for (x,) in loader:
            x = x.to(device)
            x_hat, mu, logvar = model(x)
            terms = balance(x, x_hat, mu, logvar)
            opt.zero_grad()
            terms.loss.backward()
            opt.step()
            balance.step(terms)
            _ = terms.loss.item()  # what a logging loop does every step
        sync(device)
        seconds = time.perf_counter() - t0
    return seconds


def pipeline_loop(model, balance, data, epochs, batch_size, lr, speed: Speed, device) -> float:
    times = []

    def record(row, timing, latent):
        times.append(timing["epoch_seconds"])

    data = data.to(device)
    fit(
        model,
        balance,
        lambda e: data,
        Settings(epochs=epochs, batch_size=batch_size, lr=lr, desc="bench", speed=speed),
        on_epoch=record,
    )
    return times[-1]


def train_flops_per_image(cfg: dict, batch: torch.Tensor, device) -> float:
    """Forward + backward FLOPs of one training step, per image."""
    model = build_stage1(cfg, 1, 28).to(device)
    balance = build_balance(cfg["balance"], "train.balance").to(device)
    with FlopCounterMode(display=False) as counter:
        x_hat, mu, logvar = model(batch)
        balance(batch, x_hat, mu, logvar).loss.backward()
    return counter.get_total_flops() / len(batch)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="mnist", help="a preset in presets/ (its train section)")
    ap.add_argument("--images", type=int, default=5000, help="training images per epoch")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per variant; the last one is timed")
    ap.add_argument("--data-root", default="data/raw", help="torchvision root holding MNIST/raw")
    ap.add_argument("--compile", action="store_true", help="also time the pipeline loop with torch.compile")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--threads", default="all", help="as params.yaml's threads: all, a number or adaptive")
    args = ap.parse_args()
    set_threads(int(args.threads) if args.threads.isdigit() else args.threads)
    device = pick_device()
    cfg = yaml.safe_load((ROOT / "presets" / f"{args.preset}.yaml").read_text())["train"]
    data, source = images(args.data_root, args.images)
    auto = Speed.resolve("auto", False, device, images=True)
    variants = [
        ("plain DataLoader loop", None),
        ("pipeline loop, fp32", Speed()),
        (f"pipeline loop ({auto.describe()})", auto),
    ]
    if args.compile:
        variants.append((f"pipeline loop ({auto.describe()}) + torch.compile", Speed(auto.bf16, True, True)))
    flops = train_flops_per_image(cfg, data[: cfg["batch_size"]].float().div(255).to(device), device)
    peak = peak_tflops(device)
    print(
        f"device {device} ({torch.get_num_threads()} threads), preset {args.preset}: {cfg['model']['arch']} "
        f"latent {cfg['latent_dim']}, batch {cfg['batch_size']}; {len(data)} {source}; "
        f"{flops / 1e9:.2f} GFLOP per training image"
    )
    results, base = [], None
    for name, speed in variants:
        torch.manual_seed(0)
        model = build_stage1(cfg, 1, 28).to(device)
        balance = build_balance(cfg["balance"], "train.balance").to(device)
        if speed is None:
            seconds = plain_loop(model, balance, data, args.epochs, cfg["batch_size"], cfg["lr"], device)
        else:
            seconds = pipeline_loop(model, balance, data, args.epochs, cfg["batch_size"], cfg["lr"], speed, device)
        rate = len(data) / seconds
        base = base or rate
        tflops = flops * rate / 1e12
        results.append(
            {
                "variant": name,
                "images_per_s": rate,
                "epoch_seconds_60k": MNIST_TRAIN / rate,
                "ratio": rate / base,
                "tflops": tflops,
                "peak_share": tflops / peak if peak else None,
            }
        )
    print(
        f"{'variant':58s} {'images/s':>9s} {'60k epoch':>10s} {'ratio':>6s} {'TFLOP/s':>8s}"
        + ("  of peak" if peak else "")
    )
    for r in results:
        print(
            f"{r['variant']:58s} {r['images_per_s']:9.0f} {r['epoch_seconds_60k']:9.0f}s {r['ratio']:5.2f}x "
            f"{r['tflops']:8.3f}" + (f"  {r['peak_share']:.1%} of {peak:.0f}" if peak else "")
        )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "device": str(device),
                    "preset": args.preset,
                    "source": source,
                    "gflop_per_image": flops / 1e9,
                    "results": results,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
