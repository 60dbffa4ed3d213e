"""``running_gamma``: Asperti & Trentin (IEEE Access 2020), the seed paper.

gamma is not a parameter and gets no gradient. After every optimisation step

    mse_run <- min(mse_run, momentum * mse_run + (1 - momentum) * batch_mse)
    gamma    = sqrt(mse_run)

starting from mse_run = 1 (gamma = 1). The loss is

    sse / (2 gamma^2) + k * KL

(the D log gamma term is constant in the gradient and left out). That is D / (2 mse_run)
times ``mse + beta_eff * KL`` with ``beta_eff = 2 k mse_run / D``: at each step the gradient
points as a fixed-beta loss's with that beta_eff, a KL weight that falls in proportion as
reconstructions improve. It is not a fixed-beta run under Adam, though: the factor
D / (2 mse_run) grows as mse_run falls and Adam's running RMS of the gradients lags it, so
the steps come out larger than lr while it grows (``tests/test_equivalence.py``). The min-clamp makes the estimate
non-increasing. The reference code uses ``k = (2 * image_side / latent_dim)^2``
(1 for 32x32 images with 64 latents, 4 for 64x64); the default here is 1.
"""

import torch

from pipeline.balance.base import Balance, LossTerms, kl_divergence, register, squared_errors


@register("running_gamma")
class RunningGamma(Balance):
    def __init__(self, **params):
        super().__init__(**params)
        self.register_buffer("mse_run", torch.tensor(1.0))

    @property
    def gamma(self) -> float:
        return float(self.mse_run.sqrt())

    def forward(self, x, x_hat, mu, logvar) -> LossTerms:
        sse, mse, dim = squared_errors(x, x_hat)
        kl = kl_divergence(mu, logvar).mean()
        rec = sse / (2 * self.mse_run)  # gamma^2 = mse_run, a buffer: no gradient
        return LossTerms(rec, kl, self.k, mse, gamma=self.mse_run.sqrt(), beta_eff=2 * self.k * self.mse_run / dim)

    @torch.no_grad()
    def step(self, terms: LossTerms) -> None:
        new = self.momentum * self.mse_run + (1 - self.momentum) * terms.mse.detach().to(self.mse_run.dtype)
        self.mse_run.copy_(torch.minimum(self.mse_run, new) if self.min_clamp else new)
