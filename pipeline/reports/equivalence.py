"""One KL weight, three reconstruction losses: what a fixed beta means as a decoder variance.

A Gaussian decoder N(x_hat, gamma^2 I) over the D = C*H*W values of an image gives

    -log p(x|z) = sse / (2 gamma^2) + D log gamma + D/2 log(2 pi).

With gamma fixed, the last two terms are constants, and multiplying the negative ELBO by
the positive constant 2 gamma^2 leaves its minimisers unchanged:

    sse + 2 gamma^2 KL           a summed squared error with  beta_sse  = 2 gamma^2
    mse + (2 gamma^2 / D) KL     PyTorch's mean-reduced MSE   beta_mean = 2 gamma^2 / D

(mse = sse / D; KL summed over latents, both averaged over the batch). So a fixed beta is
a decoder variance, and which one depends on the loss it multiplies: beta = 0.1 is
gamma^2 = 0.05 next to a summed squared error, but gamma^2 = 0.05 D (39.2 for 28x28 grey
images) next to a mean-reduced one. A Bernoulli decoder (binary cross-entropy) has no
variance to trade: BCE + KL is its ELBO, and any other beta is not one.

``beta_eff`` (pipeline.balance.base) is beta_mean, whatever the strategy.
"""

LOSSES = {  # reconstruction loss -> how the KL weight next to it reads
    "sse": "summed squared error (reduction='sum')",
    "mse_mean": "mean-reduced squared error (PyTorch's default reduction='mean')",
    "bce": "binary cross-entropy (Bernoulli decoder)",
}


def beta_for_variance(gamma2: float, dim: int, loss: str) -> float | None:
    """The fixed beta whose loss has the optimum of a Gaussian decoder with variance ``gamma2``
    over ``dim`` values; None for BCE (no variance: beta = 1 is its ELBO)."""
    if loss not in LOSSES:
        raise ValueError(f"unknown reconstruction loss {loss!r} (choose one of {', '.join(LOSSES)})")
    return {"sse": 2 * gamma2, "mse_mean": 2 * gamma2 / dim, "bce": None}[loss]


def variance_for_beta(beta: float, dim: int, loss: str) -> float | None:
    """The decoder variance gamma^2 that a fixed ``beta`` assumes next to ``loss``; None for BCE."""
    if loss not in LOSSES:
        raise ValueError(f"unknown reconstruction loss {loss!r} (choose one of {', '.join(LOSSES)})")
    return {"sse": beta / 2, "mse_mean": beta * dim / 2, "bce": None}[loss]
