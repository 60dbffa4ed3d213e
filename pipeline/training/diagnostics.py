"""Diagnostics that show what the balance does to training.

- Gradient norms: how hard each loss term pushes. For one batch, the gradient of the
  reconstruction term and of the weighted KL term (``kl_weight * KL``, as in the loss)
  with respect to the encoder's and the decoder's parameters (the KL does not touch
  the decoder). ``kl_grad_share`` = |g_KL,enc| / (|g_KL,enc| + |g_rec,enc|): the KL's
  share of the push on the encoder.
- Per latent dimension, over a fixed set of inputs: KL_j = E_x[1/2 (mu_j^2 + sigma_j^2
  - log sigma_j^2 - 1)]; activity Var_x(mu_j) (a unit is *active* when it exceeds
  0.01, Burda et al. 2016; collapsed units are what a too-strong KL produces); and the
  variance law Var_x(mu_j) + E_x[sigma_j^2], which should be ~1 when the aggregate
  posterior matches the N(0, I) prior (Asperti 2020).

They run in eval mode under a forked RNG, so they do not change training.
"""

import torch

from pipeline.balance import Balance

ACTIVE_THRESHOLD = 0.01


def _norm(grads) -> float:
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None)))


def gradient_norms(model, balance: Balance, x: torch.Tensor) -> dict:
    """Norms of grad(rec) and grad(kl_weight * KL) w.r.t. encoder and decoder parameters on batch x."""
    enc, dec = model.encoder_parameters(), model.decoder_parameters()
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        x_hat, mu, logvar = model(x)
        terms = balance(x, x_hat, mu, logvar)
        g_rec = torch.autograd.grad(terms.rec, enc + dec, retain_graph=True, allow_unused=True)
        g_kl = torch.autograd.grad(terms.kl_weight * terms.kl, enc, allow_unused=True)
    model.train(was_training)
    rec_enc, rec_dec, kl_enc = _norm(g_rec[: len(enc)]), _norm(g_rec[len(enc) :]), _norm(g_kl)
    return {
        "grad_rec_encoder": rec_enc,
        "grad_rec_decoder": rec_dec,
        "grad_kl_encoder": kl_enc,
        "kl_grad_share": kl_enc / (kl_enc + rec_enc) if kl_enc + rec_enc > 0 else 0.0,
    }


@torch.no_grad()
def latent_statistics(model, x: torch.Tensor, batch_size: int = 500) -> dict[str, torch.Tensor]:
    """Per latent dimension over inputs x: kl, var_mu (activity), e_sigma2, variance_law."""
    was_training = model.training
    model.eval()
    mus, logvars = [], []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        mu, logvar = model.encode(xb.float() / 255 if xb.dtype == torch.uint8 else xb)
        mus.append(mu.double())
        logvars.append(logvar.double())
    model.train(was_training)
    mu, logvar = torch.cat(mus), torch.cat(logvars)
    sigma2 = logvar.exp()
    var_mu = mu.var(0)
    return {
        "kl": (0.5 * (mu**2 + sigma2 - logvar - 1)).mean(0).cpu(),
        "var_mu": var_mu.cpu(),
        "e_sigma2": sigma2.mean(0).cpu(),
        "variance_law": (var_mu + sigma2.mean(0)).cpu(),
    }


def latent_summary(stats: dict[str, torch.Tensor]) -> dict:
    """Scalars of the per-dimension statistics, for per-epoch curves."""
    return {
        "active_units": int((stats["var_mu"] > ACTIVE_THRESHOLD).sum()),
        "variance_law_mean": float(stats["variance_law"].mean()),
        "kl_dim_max": float(stats["kl"].max()),
    }


def latent_rows(stats: dict[str, torch.Tensor], epoch: int | None = None) -> list[dict]:
    """One row per latent dimension (long format, for CSV plots)."""
    head = {} if epoch is None else {"epoch": epoch}
    return [head | {"dim": j, **{k: float(v[j]) for k, v in stats.items()}} for j in range(len(stats["kl"]))]


def stack_latents(per_epoch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per-epoch statistics as one (epochs, dims) tensor per statistic: a checkpoint then
    holds four tensors, not four per epoch (saving stays as fast at epoch 400 as at epoch 1)."""
    if not per_epoch:
        return {}
    return {k: torch.stack([stats[k] for stats in per_epoch]) for k in per_epoch[0]}


def unstack_latents(stacked: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """The inverse of :func:`stack_latents`."""
    epochs = len(next(iter(stacked.values()))) if stacked else 0
    return [{k: v[i] for k, v in stacked.items()} for i in range(epochs)]


OVERFIT = 1.5  # REC's test MSE over its MSE on training images above which train_vae says so


def overfit_note(test_mse: float, train_mse: float) -> str | None:
    """One line when REC's per-value MSE on the test images is more than OVERFIT times its MSE
    on as many training images (both decoded from posterior means): the model keeps detail of
    its own images that it does not find in new ones."""
    if not test_mse > OVERFIT * train_mse:
        return None
    return (
        f"the test MSE {test_mse:.4g} is {test_mse / train_mse:.1f}x the training images' {train_mse:.4g}: the model "
        "reconstructs the images it trained on better than new ones (more images keep it general; judge train.epochs "
        "by the test MSE, not this ratio: on the digits more epochs raise the ratio and lower the test MSE and FIDs, "
        "docs/budget.md)"
    )


@torch.no_grad()
def code_fit(stage2, z: torch.Tensor) -> dict:
    """How the stage-2 VAE fits stage-1 codes ``z`` (posterior means, one row per image):
    ``rel_mse``, its reconstruction dec2(mu2(z)) MSE over the codes' mean variance; the
    aggregate of its posteriors against the N(0, I) prior it samples from: ``u_mean_rms``,
    the RMS of mean(mu2), and ``u_cov_error``, ||Cov(mu2) + diag(E[sigma2^2]) - I||_F / d
    (0 when the codes' aggregate posterior has the prior's first two moments); ``active_units``."""
    stage2.eval()
    mu, logvar = (t.double() for t in stage2.encode(z))
    rel_mse = float((stage2.decode(mu.to(z.dtype)) - z).pow(2).mean() / z.var(0).mean())
    cov = torch.cov(mu.T).reshape(mu.shape[1], -1) + torch.diag(logvar.exp().mean(0))
    eye = torch.eye(mu.shape[1], dtype=cov.dtype)
    return {
        "rel_mse": rel_mse,
        "u_mean_rms": float(mu.mean(0).pow(2).mean().sqrt()),
        "u_cov_error": float(torch.linalg.matrix_norm(cov - eye) / mu.shape[1]),
        "active_units": int((mu.var(0) > ACTIVE_THRESHOLD).sum()),
    }
