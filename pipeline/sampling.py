"""Images for evaluation: REC, GEN-1 and GEN-2.

- REC:   x -> mu(x) -> dec1: reconstructions of held-out images (posterior mean).
- GEN-1: z ~ N(0, I) -> dec1: the stage-1 prior, no second stage.
- GEN-2: u ~ N(0, I) -> z = dec2(u) [+ gamma_z * eps] -> dec1 (Dai & Wipf). The
  optional gamma_z noise uses the stage-2 decoder's final gamma; the seed paper's
  reference code leaves it out (``gamma_noise: false``).

All return uint8 images on the CPU, produced batch by batch. Samplers draw their
noise from their own ``torch.Generator`` (on the CPU, then moved), so each sampler's
images depend only on its seed, not on what ran before it.
"""

import torch

from pipeline.utils import to_uint8


def _batches(n: int, batch_size: int):
    for i in range(0, n, batch_size):
        yield min(batch_size, n - i)


@torch.no_grad()
def reconstruct(vae, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    device = next(vae.parameters()).device
    vae.eval()
    out = []
    for i in range(0, len(images), batch_size):
        mu, _ = vae.encode(images[i : i + batch_size].to(device).float() / 255)
        out.append(to_uint8(vae.decode(mu)).cpu())
    return torch.cat(out)


@torch.no_grad()
def generate_gen1(vae, n: int, seed: int, batch_size: int = 500) -> torch.Tensor:
    device = next(vae.parameters()).device
    g = torch.Generator().manual_seed(seed)
    vae.eval()
    return torch.cat(
        [to_uint8(vae.decode(torch.randn(b, vae.latent_dim, generator=g).to(device))).cpu() for b in _batches(n, batch_size)]
    )


@torch.no_grad()
def generate_gen2(vae, stage2, n: int, seed: int, gamma_z: float = 0.0, batch_size: int = 500) -> torch.Tensor:
    device = next(vae.parameters()).device
    g = torch.Generator().manual_seed(seed)
    vae.eval()
    stage2.eval()
    out = []
    for b in _batches(n, batch_size):
        z = stage2.decode(torch.randn(b, stage2.latent_dim, generator=g).to(device))
        if gamma_z:
            z = z + gamma_z * torch.randn(z.shape, generator=g).to(device)
        out.append(to_uint8(vae.decode(z)).cpu())
    return torch.cat(out)


@torch.no_grad()
def encode(vae, images: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior parameters (mu, logvar) of every image: the stage-2 training data."""
    device = next(vae.parameters()).device
    vae.eval()
    mus, logvars = [], []
    for i in range(0, len(images), batch_size):
        mu, logvar = vae.encode(images[i : i + batch_size].to(device).float() / 255)
        mus.append(mu)
        logvars.append(logvar)
    return torch.cat(mus), torch.cat(logvars)
