"""Images for evaluation: REC and the samplers.

- REC:   x -> mu(x) -> dec1: reconstructions of held-out images, from the posterior mean
  (the ``clean`` protocol's choice: one deterministic image per input); with a seed, from a
  posterior draw mu + sigma * eps, as both references decode (the reference protocols,
  :mod:`pipeline.evaluation.protocols`).
- ``gen1``: z ~ N(0, I) -> dec1: the stage-1 prior, no second stage (GEN-1).
- ``gen2``: u ~ N(0, I) -> z = dec2(u) -> dec1: through the second stage (GEN-2), as the
  seed paper's reference code does.
- ``gen2_noise``: GEN-2 with Dai & Wipf's z = dec2(u) + gamma_z * eps, gamma_z the
  stage-2 decoder's final gamma.
- ``gmm``: z from a Gaussian mixture fitted on the latent codes (:mod:`pipeline.evaluation.gmm`).

``rescale_latents`` (sampler ``gen2_rescaled``) is this project's variance-law correction
of GEN-2: generated latents have lower variance than the aggregate posterior, so each
dimension is rescaled around its mean to the expected standard deviation
sqrt(Var(mu_j) + E[sigma_j^2]) over the training codes (the variance law, Asperti 2019).
It is not the rule of Asperti & Trentin's code, which scales GEN-1 and GEN-2 latents by one
scalar, uncentred, only when the second stage loses variance (the ``asperti`` protocol).

Every sampler draws its noise from its own seeded ``torch.Generator`` on the CPU, so
its images depend only on its seed. Images come back as uint8 on the CPU.
"""

import torch

from pipeline.evaluation.gmm import sample_gmm
from pipeline.images import to_uint8
from pipeline.progress import progress


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _batches(n: int, batch_size: int, desc: str):
    """Batch start indices with a progress bar in images (images/s shown)."""
    with progress(total=n, desc=desc, unit="img", unit_scale=True, leave=False) as bar:
        for i in range(0, n, batch_size):
            yield i
            bar.update(min(batch_size, n - i))


@torch.no_grad()
def decode(vae, z: torch.Tensor, batch_size: int = 500, quantise: bool = True) -> torch.Tensor:
    """Stage-1 decoder images of latents z, as uint8 (``quantise=False``: the decoder's float32
    values in [0, 1], for preprocessing that the references apply before any rounding)."""
    vae.eval()
    parts = []
    for i in _batches(len(z), batch_size, "decode"):
        x = vae.decode(z[i : i + batch_size].to(_device(vae)))
        parts.append((to_uint8(x) if quantise else x.float()).cpu())
    return torch.cat(parts)


def posterior_sample(mu: torch.Tensor, logvar: torch.Tensor, seed: int) -> torch.Tensor:
    """z = mu + sigma * eps, eps ~ N(0, I) from a seeded CPU generator (one draw per code)."""
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(seed)).to(mu.device)
    return mu + (0.5 * logvar).exp() * eps


@torch.no_grad()
def reconstruct(vae, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """REC from the posterior mean: dec1(mu(x)), uint8."""
    mu, _ = encode(vae, images, batch_size)
    return decode(vae, mu, batch_size)


@torch.no_grad()
def encode(vae, images: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior parameters (mu, logvar) of every image, on the model's device."""
    vae.eval()
    mus, logvars = [], []
    for i in _batches(len(images), batch_size, "encode"):
        mu, logvar = vae.encode(images[i : i + batch_size].to(_device(vae)).float() / 255)
        mus.append(mu)
        logvars.append(logvar)
    return torch.cat(mus), torch.cat(logvars)


@torch.no_grad()
def latents(
    sampler: str,
    n: int,
    seed: int,
    *,
    latent_dim: int,
    stage2=None,
    gamma_z: float = 0.0,
    gmm=None,
    batch_size: int = 500,
) -> torch.Tensor:
    """n latent codes (CPU, float32) from ``sampler`` (one of ``pipeline.config.choices.SAMPLERS``)."""
    g = torch.Generator().manual_seed(seed)
    if sampler == "gen1":
        return torch.randn(n, latent_dim, generator=g)
    if sampler == "gmm":
        return sample_gmm(gmm, n, g)
    if sampler not in ("gen2", "gen2_noise"):
        raise ValueError(f"unknown sampler {sampler!r}")
    stage2.eval()
    out = []
    for i in range(0, n, batch_size):
        u = torch.randn(min(batch_size, n - i), latent_dim, generator=g)
        z = stage2.decode(u.to(_device(stage2))).cpu()
        if sampler == "gen2_noise":
            z = z + gamma_z * torch.randn(z.shape, generator=g)
        out.append(z)
    return torch.cat(out)


@torch.no_grad()
def interpolate(vae, a: torch.Tensor, b: torch.Tensor, steps: int, batch_size: int = 500) -> torch.Tensor:
    """Rows of images: a_i, decoded lerp(mu(a_i), mu(b_i), t) for ``steps`` values of t in [0, 1], b_i."""
    mu_a, _ = encode(vae, a, batch_size)
    mu_b, _ = encode(vae, b, batch_size)
    t = torch.linspace(0, 1, steps, device=mu_a.device)[None, :, None]
    z = (mu_a[:, None] * (1 - t) + mu_b[:, None] * t).flatten(0, 1)
    mid = decode(vae, z, batch_size).unflatten(0, (len(a), steps))
    return torch.cat([a[:, None], mid, b[:, None]], 1).flatten(0, 1)


def posterior_draws(mu: torch.Tensor, sigma: torch.Tensor):
    """The second stage's training data: ``epoch -> z = mu + sigma * eps`` with a fresh
    eps ~ N(0, I) at every call (every epoch), from the global RNG, as Dai & Wipf's demo.py
    redraws the stage-1 posterior samples every stage-2 epoch (lines 65-75)."""

    def draw(epoch: int) -> torch.Tensor:
        return mu + sigma * torch.randn(mu.shape).to(mu.device)

    return draw


def rescale_constants(z: torch.Tensor, expected_std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rescale's mean m and per-dimension factor s of the latents z: m = mean(z),
    s = expected_std / std(z)."""
    return z.mean(0), expected_std / z.std(0)


def rescale_latents(z: torch.Tensor, expected_std: torch.Tensor) -> torch.Tensor:
    """Rescale each dimension of z around its mean to the expected standard deviation,
    m + (z - m) * s (:func:`rescale_constants`; this project's per-dimension rule: see the
    module docstring for how it differs from Asperti & Trentin's)."""
    mean, scale = rescale_constants(z, expected_std)
    return mean + (z - mean) * scale
