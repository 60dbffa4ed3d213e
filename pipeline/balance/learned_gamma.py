"""``learned_gamma``: Dai & Wipf (ICLR 2019), the decoder variance as a trained parameter.

log gamma is a trainable scalar starting at 0 (gamma = 1). The loss is the full
Gaussian negative log-likelihood plus the KL:

    sse / (2 gamma^2) + D log gamma + D/2 log(2 pi) + KL

The gradient flows into log gamma, whose optimum for a given batch is
gamma^2 = sse / D = mse: it learns the data's reconstruction error, as running
gamma estimates it. beta_eff = 2 gamma^2 / D.

How fast it gets there is the optimiser's business: Adam's step is about lr for a gradient
of steady size, whatever that size, and at most lr (1 - beta1) / sqrt(1 - beta2) = 3.2 lr at
the default betas (Kingma & Ba 2015, section 2.1), so log gamma moves about lr per step while
it heads one way (1e-3: one unit of log gamma, a factor e in gamma, per 1,000 steps). From gamma = 1 to an MNIST-like gamma of 0.1 is
2.3 units; ``lr_factor`` (log gamma's learning rate as a multiple of the model's) lets it
get there within a short budget.
"""

import math

import torch
from torch import nn

from pipeline.balance.base import Balance, LossTerms, kl_divergence, register, squared_errors


@register("learned_gamma")
class LearnedGamma(Balance):
    def __init__(self, **params):
        super().__init__(**params)
        self.log_gamma = nn.Parameter(torch.zeros(()))

    @property
    def gamma(self) -> float:
        return float(self.log_gamma.detach().exp())

    def forward(self, x, x_hat, mu, logvar) -> LossTerms:
        sse, mse, dim = squared_errors(x, x_hat)
        gamma2 = torch.exp(2 * self.log_gamma)
        rec = sse / (2 * gamma2) + dim * self.log_gamma + dim / 2 * math.log(2 * math.pi)
        return LossTerms(
            rec,
            kl_divergence(mu, logvar).mean(),
            1.0,
            mse,
            gamma=self.log_gamma.detach().exp(),
            beta_eff=2 * gamma2.detach() / dim,
        )
