"""The interface every balancing strategy implements, and the shared loss pieces.

A Gaussian decoder with variance gamma^2 gives the per-image reconstruction term

    rec(x) = sse(x) / (2 gamma^2) + D log gamma + D/2 log(2 pi),

with sse the summed squared error over the D = C*H*W pixel values. Strategies differ
in how gamma is set. Each reports, besides its loss, the same diagnostics on one
common scale,

    mse + beta_eff * KL   (mse = sse / D),

the loss with the KL weight read against the per-value MSE. How a strategy's loss
reaches that scale depends on its form:

- fixed, annealed (``sse + beta KL``): divide by D, so beta_eff = beta / D;
- running_gamma (``sse / (2 gamma^2) + k KL``, gamma held constant in the gradient):
  divide by D / (2 gamma^2), so beta_eff = 2 k gamma^2 / D;
- learned_gamma and sigma (the full Gaussian term, k = 1): the same division leaves
  beta_eff = 2 gamma^2 / D plus the terms 2 gamma^2 / D (D log gamma + D/2 log 2 pi),
  which do not depend on the networks' weights (for learned_gamma they drive gamma itself;
  for sigma with detach: false they do).

So ``beta_eff`` says how strongly the KL is weighted against the per-value MSE, whatever
the strategy: it is the beta of a loss ``mse_loss(reduction='mean') + beta * KL``
(:mod:`pipeline.reports.equivalence`), and ``loss_common`` is computed as mse + beta_eff * KL.
"""

from dataclasses import dataclass, field

import torch
from torch import nn

from pipeline.config.choices import STRATEGY_PARAMS


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) per item: 1/2 sum(mu^2 + sigma^2 - log sigma^2 - 1)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).flatten(1).sum(1)


@dataclass
class LossTerms:
    """One batch's loss ``rec + kl_weight * kl`` and its diagnostics. ``gamma`` and
    ``beta_eff`` may be 0-d tensors on the training device: reading them as Python
    floats would make the GPU wait at every step."""

    rec: torch.Tensor  # the strategy's reconstruction term (batch mean)
    kl: torch.Tensor  # KL per item (batch mean)
    kl_weight: float  # the KL's factor in the loss
    mse: torch.Tensor  # per-value mean squared error of the batch
    gamma: torch.Tensor | float  # decoder standard deviation in use (or its equivalent)
    beta_eff: torch.Tensor | float  # KL weight on the common scale mse + beta_eff * KL
    loss: torch.Tensor = field(init=False)  # what the optimiser minimises

    def __post_init__(self):
        self.loss = self.rec + self.kl_weight * self.kl

    @property
    def loss_common(self) -> torch.Tensor:
        """The loss on the common scale: mse + beta_eff * KL (comparable across strategies)."""
        return (self.mse + self.beta_eff * self.kl).detach()


STRATEGIES: dict[str, type["Balance"]] = {}


def register(name: str):
    """Class decorator: make a strategy selectable as ``balance.strategy: <name>``, with the
    params (and defaults) that :data:`pipeline.config.choices.STRATEGY_PARAMS` gives that name."""

    def add(cls):
        cls.Params = STRATEGY_PARAMS[name]
        STRATEGIES[name] = cls
        return cls

    return add


class Balance(nn.Module):
    """A strategy: ``forward`` computes the loss of a batch, ``step`` runs after
    each optimiser step (for strategies that keep running estimates). State lives
    in buffers/parameters, so it is saved with ``state_dict`` and moved by ``.to``.
    Its parameters (learned_gamma's log gamma) learn at the model's lr x ``lr_factor``."""

    lr_factor = 1.0
    Params: type  # its params: a dataclass of pipeline.config.choices (set by @register)

    def __init__(self, **params):
        """The strategy's params by keyword (its :attr:`Params`' fields, the keys of its
        params.yaml block); those not given take their defaults. An unknown one is a TypeError."""
        super().__init__()
        for name, value in vars(self.Params(**params)).items():
            setattr(self, name, value)

    @property
    def gamma(self) -> float:
        """The decoder standard deviation the strategy currently assumes."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> LossTerms:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, terms: LossTerms) -> None:
        """Called after every optimisation step; nothing to do by default."""


def squared_errors(x: torch.Tensor, x_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(sse per item averaged over the batch, per-value mse of the batch, D)."""
    sq = (x_hat - x).pow(2).flatten(1)
    return sq.sum(1).mean(), sq.mean(), sq.shape[1]
