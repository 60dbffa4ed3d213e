"""Training steps of the default run against a bare PyTorch loop doing the same steps.

    .venv/bin/python bench/steps.py [--epochs 8] [--repeats 3]

For stage 1 (the conv VAE on the digits, 8x8) and stage 2 (the dense VAE, width 256,
on 8-dimensional codes), with the default params: the same model (a copy of one
initialisation), the same data in memory on the same device, the same balanced loss
and gamma update (the ``Balance`` module), the same precision and thread count. The
bare loop is forward, loss, ``zero_grad``, ``backward``, ``torch.optim.Adam.step``,
nothing else; ours is :func:`pipeline.training.loop.fit` with no diagnostics, checkpoints or
logging (those are timed apart, as the stages' overhead). The two alternate
``--repeats`` times, after one warm-up epoch each; the best time per step of each is
compared: ratio = ours / bare. Run it in a project folder: it imports that folder's
``pipeline`` (bench/shared.py runs it so in a copy of another commit).
"""

import argparse
import copy
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))

import torch  # noqa: E402
import yaml  # noqa: E402

from pipeline.balance import build_balance  # noqa: E402
from pipeline.data.digits import load_digits  # noqa: E402
from pipeline.hardware.device import Speed
from pipeline.hardware.threads import set_threads  # noqa: E402
from pipeline.models import build_stage1, build_stage2  # noqa: E402
from pipeline.training.loop import Settings, as_input, fit  # noqa: E402


def ours(model, balance, data, cfg, speed, epochs) -> float:
    """Seconds per step of :func:`fit` (its own per-epoch clock around the steps)."""
    seconds = []
    fit(
        model,
        balance,
        lambda epoch: data,
        Settings(epochs=epochs, batch_size=cfg["batch_size"], lr=cfg["lr"], desc="fit", speed=speed),
        on_epoch=lambda row, timing, latent: seconds.append(timing["epoch_seconds"]),
    )
    steps = -(-len(data) // cfg["batch_size"])
    return sum(seconds[1:]) / ((epochs - 1) * steps)


def bare(model, balance, data, cfg, speed, epochs) -> float:
    """Seconds per step of the plainest loop that trains the same way."""
    opt = torch.optim.Adam(list(model.parameters()) + list(balance.parameters()), lr=cfg["lr"])
    b, n = cfg["batch_size"], len(data)
    steps = -(-n // b)
    for epoch in range(epochs):
        if epoch == 1:
            t0 = time.perf_counter()
        perm = torch.randperm(n)
        for i in range(steps):
            x = as_input(data[perm[i * b : (i + 1) * b]])
            if speed.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=speed.bf16):
                x_hat, mu, logvar = model(x)
            terms = balance(x, x_hat.float(), mu.float(), logvar.float())
            opt.zero_grad()
            terms.loss.backward()
            opt.step()
            balance.step(terms)
    return (time.perf_counter() - t0) / ((epochs - 1) * steps)


def compare(name: str, model, balance, data, cfg, speed, epochs: int, repeats: int) -> dict:
    best = {"ours": float("inf"), "bare": float("inf")}
    for _ in range(repeats):
        for kind, loop in (("bare", bare), ("ours", ours)):
            m, bal = copy.deepcopy(model), copy.deepcopy(balance)
            best[kind] = min(best[kind], loop(m, bal, data, cfg, speed, epochs))
    ratio = best["ours"] / best["bare"]
    print(
        f"{name:30s} {torch.get_num_threads()} threads, {'bf16' if speed.bf16 else 'fp32'}: "
        f"bare {1e3 * best['bare']:.3f} ms/step, ours {1e3 * best['ours']:.3f} ms/step: {ratio:.3f}x"
    )
    return {
        "threads": torch.get_num_threads(),
        "bare_ms": 1e3 * best["bare"],
        "ours_ms": 1e3 * best["ours"],
        "ratio": ratio,
    }


def main(epochs: int = 8, repeats: int = 3) -> dict:
    params = yaml.safe_load(Path("params.yaml").read_text())
    set_threads(params.get("threads", "all"))  # as the stages run (a commit before the param: all)
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    train, _ = load_digits(params["prepare"]["test_fraction"], params["prepare"]["seed"])
    cfg1 = params["train"]
    stage1 = build_stage1(cfg1, train.images.shape[1], train.images.shape[-1])
    speed1 = Speed.resolve(cfg1["precision"], False, cpu, images=True)
    cfg2 = params["stage2"]
    stage2 = build_stage2(cfg2, stage1.latent_dim)
    codes = torch.randn(len(train), stage1.latent_dim)  # stage 2's step does not depend on the values
    speed2 = Speed.resolve(cfg2["precision"], False, cpu, images=False)
    return {
        "stage1": compare(
            "stage 1 (conv, digits 8x8)",
            stage1,
            build_balance(cfg1["balance"]),
            train.images,
            cfg1,
            speed1,
            epochs,
            repeats,
        ),
        "stage2": compare(
            "stage 2 (dense, width 256)", stage2, build_balance(cfg2["balance"]), codes, cfg2, speed2, epochs, repeats
        ),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8, help="epochs per timing (the first is a warm-up)")
    ap.add_argument("--repeats", type=int, default=3, help="alternations of bare and ours; the best of each counts")
    ap.add_argument("--out", type=Path, help="write the measurements as JSON here")
    args = ap.parse_args()
    result = main(args.epochs, args.repeats)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
