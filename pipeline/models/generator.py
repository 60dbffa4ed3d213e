"""The registered generator: one torch module that turns a standard normal draw into images
with one call, for whichever sampler the evaluate stage chose (the lowest FID against the
validation images held out of training; docs/evaluation.md#the-registered-generator).

``forward(u)``, u ~ N(0, I) of shape (N, ``latent_dim``), where d is stage 1's latent size:

- ``gen1``: z = u (``latent_dim`` d), GEN-1;
- ``gen2``: z = dec2(u) (d), GEN-2;
- ``gen2_noise``: z = dec2(u[:, :d]) + gamma_z u[:, d:] (2d), Dai & Wipf's GEN-2;
- ``gen2_rescaled``: z = m + (dec2(u) - m) * s (d), the variance-law rescale with its mean m
  and per-dimension factor s fixed to those of the evaluation's GEN-2 latents;
- ``gmm``: the mixture's component k is the first whose cumulative weight exceeds
  Phi(u[:, 0]) (Phi the standard normal CDF, so Phi(u_0) ~ U(0, 1) and P(k) = w_k), then
  z = mean_k + L_k u[:, 1:] (d + 1): an exact draw of the mixture, and a function of u;

then images dec1(z) in [0, 1], shape (N, C, H, W). The same u gives the same images (no
randomness inside), so ``mlflow models serve`` answers the same request the same way.
"""

import torch
from torch import nn

INPUT_SIZE = {"gen1": 1, "gen2": 1, "gen2_noise": 2, "gen2_rescaled": 1}  # x d; gmm: d + 1


class Generator(nn.Module):
    """Sampler ``sampler``'s latent map, then stage 1's decoder (see the module docstring).
    ``gmm``: the mixture as :func:`pipeline.evaluation.gmm.fit_gmm` keeps it; ``shift`` and
    ``scale``: gen2_rescaled's m and s."""

    def __init__(self, vae, sampler: str, stage2=None, gamma_z: float = 0.0, gmm=None, shift=None, scale=None):
        super().__init__()
        self.vae, self.sampler = vae.eval(), sampler
        self.stage2 = stage2.eval() if sampler.startswith("gen2") else None
        d = vae.latent_dim
        self.latent_dim = d + 1 if sampler == "gmm" else INPUT_SIZE[sampler] * d  # the input u's size
        self.gamma_z = float(gamma_z)
        if sampler == "gmm":
            self.register_buffer("cum_weights", gmm["weights"].cumsum(0).float())
            self.register_buffer("means", gmm["means"].float())
            self.register_buffer("scale_tril", gmm["scale_tril"].float())
        if sampler == "gen2_rescaled":
            self.register_buffer("shift", shift.float())
            self.register_buffer("scale", scale.float())

    def latents(self, u: torch.Tensor) -> torch.Tensor:
        """Stage-1 latent codes z of the standard normal draw u."""
        d = self.vae.latent_dim
        if self.sampler == "gen1":
            return u
        if self.sampler == "gmm":
            p = torch.special.ndtr(u[:, 0])
            k = torch.searchsorted(self.cum_weights, p[:, None], right=True)[:, 0].clamp(max=len(self.means) - 1)
            return self.means[k] + (self.scale_tril[k] @ u[:, 1:, None])[..., 0]
        z = self.stage2.decode(u[:, :d])
        if self.sampler == "gen2_noise":
            return z + self.gamma_z * u[:, d:]
        if self.sampler == "gen2_rescaled":
            return self.shift + (z - self.shift) * self.scale
        return z

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(self.latents(u))
