"""How likely the model finds held-out images: the negative ELBO and the importance-weighted
bound (IWAE, Burda et al. 2016), in nats per image and in bits per dimension.

Data are 8-bit images x in {0, ..., 255}^D, dequantised uniformly: y = (x + u) / 256,
u ~ U[0, 1)^D (one seeded draw). For any density p on y, by Jensen (Theis et al. 2016),

    log P(x) >= E_u[log p(y)] - D log 256,   so   bits/dim = (-log p(y) + D log 256) / (D log 2)

bounds the code length of the discrete images.

Stage 1: p(y|z) = N(y; dec(z), gamma^2 I), p(z) = N(0, I), q(z|y) = N(mu(y), diag sigma(y)^2).
With K draws z_k ~ q(z|y) and log weights

    log w_k = log p(y|z_k) + log p(z_k) - log q(z_k|y),
    log p(y|z) = -sse(y, z) / (2 gamma^2) - D log gamma - D/2 log(2 pi),

    ELBO = mean_k log w_k  <=  IWAE_K = log mean_k exp(log w_k)  <=  log p(y),

and IWAE_K tightens as K grows. The draws' sse is kept, so both bounds are evaluated at any
gamma without decoding again. Three values of gamma:

- ``gamma_trained``: the decoder std the balance strategy ended training with;
- ``gamma_test``: gamma^2 = mean sse / D over the test draws (the test MSE of decoded
  posterior draws), the gamma that maximises the test ELBO for this decoder (d ELBO /
  d gamma = 0 has this one root). It is not the IWAE bound's optimum: the log-mean-exp
  over draws weights the draws with small sse most, so the IWAE at gamma_test can be
  above (worse than) the IWAE at the trained gamma;
- ``gamma_iwae_{stage1,twostage}``: the gamma that maximises each model's test IWAE bound,
  found by a one-dimensional search over log gamma on the stored draws (`Draws.gamma_iwae`):
  every model scored at its best variance for that bound, on equal footing. A gamma chosen
  on the images it scores would flatter the bound, so ``nll_iwae_{model}_gamma_iwae`` is
  cross-fitted: gamma chosen on the even-numbered images scores the odd ones and vice versa
  (`Draws.cross_fitted_iwae`); ``gamma_iwae_{model}`` is the one chosen on all of them.

Two-stage: the prior of z is the second stage, p(z) = int N(z; dec2(u), gamma_z^2 I) N(u; 0, I) du
(gamma_z the stage-2 strategy's final gamma), estimated with M draws u_m ~ q2(u|z):

    log p^(z) = log mean_m exp(log N(z; dec2(u_m), gamma_z^2 I) + log N(u_m; 0, I) - log q2(u_m|z)).

p^(z) is an unbiased estimate of p(z), so the product of both levels' weights is an unbiased
estimate of p(y) and the IWAE of it is still a lower bound; the two-stage ELBO uses the
inner ELBO (the mean of the inner log weights) for log p(z).
"""

import math
from dataclasses import dataclass

import torch

from pipeline.progress import progress

LOG_2PI = math.log(2 * math.pi)


def log_normal(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag exp(logvar)), summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (x - mean).pow(2) / logvar.exp()).sum(-1)


def log_standard_normal(x: torch.Tensor) -> torch.Tensor:
    """log N(x; 0, I), summed over the last dimension."""
    return -0.5 * (LOG_2PI + x.pow(2)).sum(-1)


def log_mean_exp(x: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.logsumexp(x, dim) - math.log(x.shape[dim])


def dequantise(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """uint8 images -> y = (x + u) / 256 with u ~ U[0, 1), float32, same shape."""
    return (images.float() + torch.rand(images.shape, generator=generator)) / 256


def bits_per_dim(nll_nats: float, dim: int) -> float:
    """Negative log-likelihood (nats per image) of y in [0, 1]^D -> bits per dimension of the 8-bit data."""
    return (nll_nats + dim * math.log(256)) / (dim * math.log(2))


@dataclass
class Draws:
    """Per test item and posterior draw k (tensors of shape (N, K)): the squared error of the
    decoded draw, log q(z_k|y), log N(z_k; 0, I), and the two-stage prior's log p(z_k)
    estimates (IWAE and ELBO forms; None without a second stage)."""

    sse: torch.Tensor
    log_q: torch.Tensor
    log_prior: torch.Tensor
    log_prior2_iwae: torch.Tensor | None
    log_prior2_elbo: torch.Tensor | None
    dim: int

    def gamma_test(self) -> float:
        """sqrt(mean sse / D): the ELBO-optimal decoder std on these draws."""
        return math.sqrt(float(self.sse.double().mean()) / self.dim)

    def gamma_iwae(self, two_stage: bool = False) -> float:
        """The decoder std that minimises the negative IWAE bound on these draws: the best of a
        grid of ``log gamma`` from ``log gamma_test - 4`` to ``+ 1`` (101 points; the grid
        reaches far below gamma_test, as the log-mean-exp favours the draws of small sse), then
        golden-section search between that point's neighbours, to 1e-6 in log gamma."""

        def nll(log_gamma: float) -> float:
            return self.bounds(math.exp(log_gamma), two_stage)["iwae"]

        t0 = math.log(self.gamma_test())
        grid = [t0 - 4 + i / 20 for i in range(101)]
        best = min(range(len(grid)), key=lambda i: nll(grid[i]))
        lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
        r = (math.sqrt(5) - 1) / 2
        a, b = hi - r * (hi - lo), lo + r * (hi - lo)
        fa, fb = nll(a), nll(b)
        while hi - lo > 1e-6:
            if fa < fb:
                hi, b, fb = b, a, fa
                a = hi - r * (hi - lo)
                fa = nll(a)
            else:
                lo, a, fa = a, b, fb
                b = lo + r * (hi - lo)
                fb = nll(b)
        return math.exp((lo + hi) / 2)

    def rows(self, index) -> "Draws":
        """The draws of the items ``index`` (a slice or index tensor)."""
        fields = (self.sse, self.log_q, self.log_prior, self.log_prior2_iwae, self.log_prior2_elbo)
        return Draws(*(None if t is None else t[index] for t in fields), self.dim)

    def cross_fitted_iwae(self, two_stage: bool = False) -> torch.Tensor:
        """Each item's negative IWAE bound (nats) at an IWAE-optimal gamma that never saw it:
        gamma chosen on the even-numbered items scores the odd ones and vice versa (2-fold
        cross-fitting)."""
        out = torch.empty(len(self.sse), dtype=torch.float64)
        for fit, score in ((slice(0, None, 2), slice(1, None, 2)), (slice(1, None, 2), slice(0, None, 2))):
            out[score] = self.rows(score).per_item(self.rows(fit).gamma_iwae(two_stage), two_stage)["iwae"]
        return out

    def per_item(self, gamma: float, two_stage: bool = False) -> dict:
        """Each item's negative ELBO and negative IWAE bound (nats, float64 (N,)) at decoder std ``gamma``."""
        log_lik = -self.sse.double() / (2 * gamma**2) - self.dim * math.log(gamma) - self.dim / 2 * LOG_2PI
        log_q = self.log_q.double()
        if two_stage:
            elbo = log_lik + self.log_prior2_elbo.double() - log_q
            iwae = log_lik + self.log_prior2_iwae.double() - log_q
        else:
            elbo = iwae = log_lik + self.log_prior.double() - log_q
        return {"elbo": -elbo.mean(1), "iwae": -log_mean_exp(iwae, 1)}

    def bounds(self, gamma: float, two_stage: bool = False) -> dict:
        """Mean negative ELBO and negative IWAE bound (nats per item) at decoder std ``gamma``."""
        return {k: float(v.mean()) for k, v in self.per_item(gamma, two_stage).items()}


def standard_error(values: torch.Tensor) -> float:
    """The standard error of the mean of ``values`` (sample std / sqrt(n)): how far the mean
    over these items may sit from the mean over all items they were drawn from."""
    return float(values.std() / math.sqrt(len(values))) if len(values) > 1 else float("nan")


@torch.no_grad()
def prior_log_density(stage2, gamma_z: float, z: torch.Tensor, samples: int, generator: torch.Generator):
    """Two-stage prior log p(z) of codes z (B, L) by importance sampling with ``samples``
    draws from the stage-2 encoder: (IWAE estimate, ELBO estimate), each of shape (B,)."""
    mu, logvar = stage2.encode(z)
    eps = torch.randn((len(z), samples, z.shape[1]), generator=generator).to(z.device)
    u = mu[:, None] + (0.5 * logvar).exp()[:, None] * eps
    z_hat = stage2.decode(u.flatten(0, 1)).view(u.shape)
    var_z = torch.full_like(z_hat, 2 * math.log(gamma_z))
    log_w = log_normal(z[:, None], z_hat, var_z) + log_standard_normal(u) - log_normal(u, mu[:, None], logvar[:, None])
    return log_mean_exp(log_w, 1), log_w.mean(1)


@torch.no_grad()
def draw(
    vae,
    y: torch.Tensor,
    samples: int,
    seed: int,
    *,
    stage2=None,
    gamma_z: float = 1.0,
    prior_samples: int = 1,
    batch_size: int = 500,
    desc: str = "likelihood",
) -> Draws:
    """Posterior draws for every item of y (N, ...) (already dequantised, on the CPU):
    ``samples`` draws per item, in batches of about ``batch_size`` decodes. With ``stage2``,
    also the two-stage prior's estimates with ``prior_samples`` inner draws."""
    vae.eval()
    if stage2 is not None:
        stage2.eval()
    device = next(vae.parameters()).device
    g = torch.Generator().manual_seed(seed)
    per_batch = max(1, batch_size // samples)
    out = {k: [] for k in ("sse", "log_q", "log_prior", "iwae2", "elbo2")}
    with progress(total=len(y), desc=desc, unit="img", leave=False) as bar:
        for i in range(0, len(y), per_batch):
            yb = y[i : i + per_batch].to(device)
            mu, logvar = vae.encode(yb)
            eps = torch.randn((len(yb), samples, mu.shape[1]), generator=g).to(device)
            z = mu[:, None] + (0.5 * logvar).exp()[:, None] * eps
            x_hat = vae.decode(z.flatten(0, 1)).view(len(yb), samples, -1)
            out["sse"].append((yb.flatten(1)[:, None] - x_hat.float()).pow(2).sum(-1).cpu())
            out["log_q"].append(log_normal(z, mu[:, None], logvar[:, None]).cpu())
            out["log_prior"].append(log_standard_normal(z).cpu())
            if stage2 is not None:
                iwae, elbo = prior_log_density(stage2, gamma_z, z.flatten(0, 1), prior_samples, g)
                out["iwae2"].append(iwae.view(len(yb), samples).cpu())
                out["elbo2"].append(elbo.view(len(yb), samples).cpu())
            bar.update(len(yb))
    cat = {k: torch.cat(v) if v else None for k, v in out.items()}
    return Draws(cat["sse"], cat["log_q"], cat["log_prior"], cat["iwae2"], cat["elbo2"], y[0].numel())


def likelihood_metrics(draws: Draws, gamma_trained: float, two_stage: bool) -> dict:
    """The bounds under each gamma, for stage 1 and (with a second stage) the two-stage model:
    ``nll_{elbo,iwae}_{stage1,twostage}_gamma_{trained,test}`` in nats per image and the same
    as ``bpd_...`` in bits per dimension, ``nll_iwae_{model}_gamma_iwae`` (and bpd) at each
    model's IWAE-optimal gamma, cross-fitted (:meth:`Draws.cross_fitted_iwae`); the standard
    error of each IWAE mean over the scored images as ``bpd_iwae_..._sem`` (what scoring a
    subset of the test images costs); and the gammas (``gamma_trained``, ``gamma_test``,
    ``gamma_iwae_{model}`` chosen on all items)."""
    gammas = {"trained": gamma_trained, "test": draws.gamma_test()}
    if not gamma_trained > 0:  # fixed / annealed with beta = 0 assume no decoder noise: no density
        del gammas["trained"]
    out = {f"gamma_{name}": g for name, g in gammas.items()}
    to_bits = 1 / (draws.dim * math.log(2))
    for model in ("stage1", "twostage") if two_stage else ("stage1",):
        items = {name: draws.per_item(g, model == "twostage") for name, g in gammas.items()}
        out[f"gamma_iwae_{model}"] = draws.gamma_iwae(model == "twostage")
        items["iwae"] = {"iwae": draws.cross_fitted_iwae(model == "twostage")}
        for name, bounds in items.items():
            for bound, values in bounds.items():
                out[f"nll_{bound}_{model}_gamma_{name}"] = nll = float(values.mean())
                out[f"bpd_{bound}_{model}_gamma_{name}"] = bits_per_dim(nll, draws.dim)
            out[f"bpd_iwae_{model}_gamma_{name}_sem"] = standard_error(bounds["iwae"]) * to_bits
    return out
