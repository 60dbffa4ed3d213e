"""``learned_gamma``: Dai & Wipf (ICLR 2019), the decoder variance as a trained parameter.

log gamma is a trainable scalar starting at 0 (gamma = 1). The loss is the full
Gaussian negative log-likelihood plus the KL:

    sse / (2 gamma^2) + D log gamma + D/2 log(2 pi) + KL

The gradient flows into log gamma, whose optimum for a given batch is
gamma^2 = sse / D = mse: it learns the data's reconstruction error, as running
gamma estimates it. beta_eff = 2 gamma^2 / D.

How fast it gets there is the optimiser's business: Adam's step is about lr for a gradient
of steady size, whatever that size (1e-3: one unit of log gamma, a factor e in gamma, per 1,000
steps while it heads one way). It is not bounded by lr: a gradient that grows by a factor r per
step makes |m_hat / sqrt(v_hat)| tend to (1 - beta1) / (1 - beta1 / r) / sqrt((1 - beta2) /
(1 - beta2 / r^2)), up to about 7.3 lr at r = 1.11 with the default betas (3.2 lr, Kingma & Ba's
(1 - beta1) / sqrt(1 - beta2), is only the limit of a sudden jump). From gamma = 1 to an MNIST-like gamma of 0.1 is
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
