"""The training loop shared by both stages.

Data live in memory as one tensor (uint8 images for stage 1, float latent codes for
stage 2) on the training device; each epoch is a seeded permutation sliced into
batches. After every optimiser step the balancing strategy updates its running
state (``Balance.step``), e.g. the running-gamma estimate.
"""

import time
from typing import Callable

import torch
from tqdm.auto import tqdm

from pipeline import PipelineError
from pipeline.balance import Balance

HISTORY_KEYS = ("loss", "rec", "kl", "mse", "gamma", "beta_eff")


def fit(
    model: torch.nn.Module,
    balance: Balance,
    epoch_data: Callable[[int], torch.Tensor],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    desc: str,
    on_epoch: Callable[[dict, dict], None] | None = None,
) -> list[dict]:
    """Train ``model`` with ``balance`` and return the per-epoch history.

    ``epoch_data(epoch)`` returns the epoch's training set (N, ...) on the model's
    device; uint8 tensors are scaled to [0, 1]. Each history row holds the
    batch-size-weighted epoch means of loss, rec, kl, mse, gamma and beta_eff.
    ``on_epoch(row, timing)`` is called after every epoch (timing: seconds and
    images/s, kept apart because they are not reproducible).
    """
    opt = torch.optim.Adam(list(model.parameters()) + list(balance.parameters()), lr=lr)
    history = []
    step = 0
    bar = tqdm(range(1, epochs + 1), desc=desc, unit="epoch", dynamic_ncols=True)
    for epoch in bar:
        model.train()
        data = epoch_data(epoch)
        n = len(data)
        perm = torch.randperm(n).to(data.device)
        sums = torch.zeros(len(HISTORY_KEYS), dtype=torch.float64)
        t0 = time.perf_counter()
        for i in range(0, n, batch_size):
            x = data[perm[i : i + batch_size]]
            if x.dtype == torch.uint8:
                x = x.float().div_(255)
            x_hat, mu, logvar = model(x)
            terms = balance(x, x_hat, mu, logvar)
            step += 1
            if not torch.isfinite(terms.loss):
                raise PipelineError(f"{desc}: loss became {terms.loss.item()} at epoch {epoch}, step {step}")
            opt.zero_grad(set_to_none=True)
            terms.loss.backward()
            opt.step()
            balance.step(terms)
            values = [terms.loss.item(), terms.rec.item(), terms.kl.item(), terms.mse.item(), terms.gamma, terms.beta_eff]
            sums += torch.tensor(values, dtype=torch.float64) * len(x)
        seconds = time.perf_counter() - t0
        row = {"epoch": epoch, **{k: float(v) / n for k, v in zip(HISTORY_KEYS, sums)}}
        timing = {"epoch_seconds": seconds, "images_per_s": n / seconds}
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.4g}", gamma=f"{row['gamma']:.3g}", img_s=f"{timing['images_per_s']:.0f}")
        if on_epoch is not None:
            on_epoch(row, timing)
    return history
