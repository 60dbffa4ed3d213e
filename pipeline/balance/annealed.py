"""``annealed``: the KL weight ramps from 0 to its target.

    loss = sse + beta_t * KL

Linear warm-up: beta_t = beta * min(1, t / anneal_steps), t = optimisation steps so far.
Cyclical (Fu et al., NAACL 2019): the schedule restarts every N = ``anneal_steps`` steps;
within a cycle beta_t rises linearly over the first ``ramp_fraction`` of it, then
stays at beta. Cycle c covers t in (cN, (c+1)N], so its position is
phase = ((t - 1) mod N + 1) / N: the first cycle is the linear warm-up, and every
cycle ends at full weight. A run of whole cycles therefore ends (and saves its
gamma) at beta, not at the 0 of a next cycle it never trains. Like ``fixed`` it
reports gamma = sqrt(beta_t / 2), beta_eff = beta_t / D.
"""

import math

import torch

from pipeline.balance.base import Balance, LossTerms, kl_divergence, register, squared_errors


@register("annealed")
class Annealed(Balance):
    def __init__(self, **params):
        super().__init__(**params)
        self.register_buffer("steps", torch.tensor(0, dtype=torch.long))

    def beta_at(self, t: int) -> float:
        """The KL weight after t optimisation steps."""
        if not self.cyclical:
            return self.beta * min(1.0, t / self.anneal_steps)
        phase = ((t - 1) % self.anneal_steps + 1) / self.anneal_steps if t > 0 else 0.0  # in (0, 1] after step 0
        return self.beta * min(1.0, phase / self.ramp_fraction)

    @property
    def gamma(self) -> float:
        return math.sqrt(self.beta_at(int(self.steps)) / 2)

    def forward(self, x, x_hat, mu, logvar) -> LossTerms:
        sse, mse, dim = squared_errors(x, x_hat)
        beta_t = self.beta_at(int(self.steps))
        return LossTerms(sse, kl_divergence(mu, logvar).mean(), beta_t, mse, gamma=self.gamma, beta_eff=beta_t / dim)

    @torch.no_grad()
    def step(self, terms: LossTerms) -> None:
        self.steps += 1
