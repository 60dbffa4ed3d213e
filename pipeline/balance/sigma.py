"""``sigma``: the sigma-VAE's analytic decoder variance (Rybkin et al., ICML 2021).

gamma^2 is set to the current batch's per-value MSE, the maximum-likelihood value
for the batch, with log gamma softly clipped from below (log gamma >= min_log_gamma,
-6 in the paper) so that near-perfect reconstructions do not blow the loss up:

    log gamma = min_log_gamma + softplus(1/2 log mse - min_log_gamma)
    loss = sse / (2 gamma^2) + D log gamma + D/2 log(2 pi) + KL

With ``detach`` (default) gamma is treated as a constant in the gradient, so the
reconstruction gradient is grad(sse) / (2 gamma^2), like running gamma but without the
running average. beta_eff = 2 gamma^2 / D. ``gamma`` (saved with the model) is the last
training batch's, recorded by ``step`` after the optimiser step.
"""

import math

import torch
import torch.nn.functional as F

from pipeline.balance.base import Balance, LossTerms, kl_divergence, register, squared_errors


@register("sigma")
class Sigma(Balance):
    def __init__(self, **params):
        super().__init__(**params)
        self.register_buffer("last_gamma", torch.tensor(1.0))

    @property
    def gamma(self) -> float:
        return float(self.last_gamma)

    def forward(self, x, x_hat, mu, logvar) -> LossTerms:
        sse, mse, dim = squared_errors(x, x_hat)
        m = mse.detach() if self.detach else mse
        log_gamma = self.min_log_gamma + F.softplus(0.5 * torch.log(m) - self.min_log_gamma)
        rec = sse / (2 * torch.exp(2 * log_gamma)) + dim * log_gamma + dim / 2 * math.log(2 * math.pi)
        gamma = log_gamma.detach().exp()
        return LossTerms(rec, kl_divergence(mu, logvar).mean(), 1.0, mse, gamma=gamma, beta_eff=2 * gamma**2 / dim)

    @torch.no_grad()
    def step(self, terms: LossTerms) -> None:
        """Keep the gamma of the last training batch (a diagnostic forward leaves it alone)."""
        self.last_gamma.copy_(terms.gamma)
