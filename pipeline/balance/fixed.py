"""``fixed``: the hand-set KL weight users reach for.

    loss = sse + beta * KL

beta = 1 is the plain VAE with a unit-variance-ish decoder; beta = 0.1 is the
"looks better" setting. It has the same optimum as a Gaussian decoder with fixed
gamma^2 = beta / 2, so it reports gamma = sqrt(beta / 2) and beta_eff = beta / D.
"""

import math

from pipeline.balance.base import Balance, LossTerms, kl_divergence, register, squared_errors


@register("fixed")
class Fixed(Balance):
    @property
    def gamma(self) -> float:
        return math.sqrt(self.beta / 2)

    def forward(self, x, x_hat, mu, logvar) -> LossTerms:
        sse, mse, dim = squared_errors(x, x_hat)
        kl = kl_divergence(mu, logvar).mean()
        return LossTerms(sse, kl, self.beta, mse, gamma=self.gamma, beta_eff=self.beta / dim)
