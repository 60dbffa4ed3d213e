"""The training loop shared by both stages.

Data live in memory as one tensor (uint8 images for stage 1, float latent codes for
stage 2) on the training device; each epoch is a seeded permutation sliced into
batches. After every optimiser step the balancing strategy updates its running
state (``Balance.step``), e.g. the running-gamma estimate.

Per epoch it records the batch-size-weighted means of: ``loss`` (what is minimised),
``rec`` and ``kl`` (the strategy's terms), ``mse``, ``gamma``, ``beta_eff``, and the
loss on the common scale ``loss_common = mse + kl_common`` with
``kl_common = beta_eff * KL``, comparable across strategies. With ``diag_x`` it adds
the diagnostics of :mod:`pipeline.diagnostics` (gradient norms, active units,
variance law) measured at the end of the epoch.
"""

import time
from typing import Callable

import torch

from pipeline import PipelineError
from pipeline.balance import Balance
from pipeline.diagnostics import gradient_norms, latent_statistics, latent_summary
from pipeline.utils import progress

STEP_KEYS = ("loss", "rec", "kl", "mse", "gamma", "beta_eff", "kl_common", "loss_common")


def as_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> floats in [0, 1]; float data (latent codes) unchanged."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x


def fit(
    model: torch.nn.Module,
    balance: Balance,
    epoch_data: Callable[[int], torch.Tensor],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    desc: str,
    diag_x: torch.Tensor | None = None,
    on_epoch: Callable[[dict, dict, dict | None], None] | None = None,
) -> list[dict]:
    """Train ``model`` with ``balance`` and return the per-epoch history rows.

    ``epoch_data(epoch)`` returns the epoch's training set (N, ...) on the model's
    device. ``on_epoch(row, timing, latent)`` is called after every epoch with the
    history row, the timing (seconds, images/s: kept apart, not reproducible) and the
    per-dimension latent statistics (None without ``diag_x``).
    """
    opt = torch.optim.Adam(list(model.parameters()) + list(balance.parameters()), lr=lr)
    history = []
    step = 0
    bar = progress(range(1, epochs + 1), desc=desc, unit="epoch")
    for epoch in bar:
        model.train()
        data = epoch_data(epoch)
        n = len(data)
        perm = torch.randperm(n).to(data.device)
        sums = torch.zeros(len(STEP_KEYS), dtype=torch.float64)
        t0 = time.perf_counter()
        for i in range(0, n, batch_size):
            x = as_input(data[perm[i : i + batch_size]])
            x_hat, mu, logvar = model(x)
            terms = balance(x, x_hat, mu, logvar)
            step += 1
            if not torch.isfinite(terms.loss):
                raise PipelineError(f"{desc}: loss became {terms.loss.item()} at epoch {epoch}, step {step}")
            opt.zero_grad(set_to_none=True)
            terms.loss.backward()
            opt.step()
            balance.step(terms)
            kl = terms.kl.item()
            values = (terms.loss.item(), terms.rec.item(), kl, terms.mse.item(), terms.gamma, terms.beta_eff,
                      terms.beta_eff * kl, terms.loss_common)  # fmt: skip
            sums += torch.tensor(values, dtype=torch.float64) * len(x)
        seconds = time.perf_counter() - t0
        row = {"epoch": epoch, **{k: float(v) / n for k, v in zip(STEP_KEYS, sums)}}
        latent = None
        if diag_x is not None:
            latent = latent_statistics(model, diag_x)
            row |= gradient_norms(model, balance, as_input(diag_x[:batch_size])) | latent_summary(latent)
        timing = {"epoch_seconds": seconds, "images_per_s": n / seconds}
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.4g}", gamma=f"{row['gamma']:.3g}", img_s=f"{timing['images_per_s']:.0f}")
        if on_epoch is not None:
            on_epoch(row, timing, latent)
    return history
