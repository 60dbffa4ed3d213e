"""The likelihood bounds on constructed cases with known answers."""

import math

import pytest
import torch
from torch import nn

from pipeline.evaluation.likelihood import bits_per_dim, dequantise, draw, likelihood_metrics

pytestmark = pytest.mark.quick  # unit tests: no pipeline run (`pytest -m quick`, the edit-test loop)


class LinearGaussian(nn.Module):
    """z ~ N(0, 1), y | z ~ N(a z + b, g^2): the marginal is N(b, a^2 + g^2), known exactly.
    The encoder is the exact posterior N(v a (y - b) / g^2, v), v = 1 / (1 + a^2 / g^2),
    or, with ``shift`` / ``widen``, a deliberately wrong one."""

    def __init__(self, a=1.5, b=0.3, g=0.5, shift=0.0, widen=1.0):
        super().__init__()
        self.a, self.b, self.g, self.shift, self.widen = a, b, g, shift, widen
        self.dummy = nn.Parameter(torch.zeros(()))  # the device probe

    def encode(self, y):
        var = 1 / (1 + self.a**2 / self.g**2)
        mu = var * self.a * (y - self.b) / self.g**2 + self.shift
        return mu, torch.full_like(mu, math.log(var * self.widen))

    def decode(self, z):
        return self.a * z + self.b

    def log_marginal(self, y):
        var = self.a**2 + self.g**2
        return (-0.5 * (math.log(2 * math.pi * var) + (y - self.b) ** 2 / var)).sum(1)


def data(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 1, generator=g)
    return 1.5 * z + 0.3 + 0.5 * torch.randn(n, 1, generator=g)


def test_exact_encoder_gives_the_true_log_likelihood():
    model, y = LinearGaussian(), data()
    truth = float(model.log_marginal(y).mean())
    bounds = draw(model, y, samples=10, seed=1).bounds(gamma=model.g)
    assert -bounds["iwae"] == pytest.approx(truth, rel=0.01)
    assert -bounds["elbo"] <= -bounds["iwae"] + 1e-9  # ELBO <= IWAE
    assert -bounds["elbo"] == pytest.approx(truth, rel=0.01)  # an exact posterior leaves no gap


def test_iwae_tightens_with_samples_towards_the_true_log_likelihood_and_elbo_stays_below():
    model, y = LinearGaussian(shift=0.6, widen=1.5), data()
    truth = float(model.log_marginal(y).mean())
    iwae = {k: -draw(model, y, samples=k, seed=2).bounds(model.g)["iwae"] for k in (1, 10, 100, 1000)}
    elbo = -draw(model, y, samples=1000, seed=2).bounds(model.g)["elbo"]
    # a wrong posterior costs the ELBO its KL to the true one: 1/2 (1.5 - 1 - log 1.5 + 0.6^2 / 0.1) = 1.85 nats
    assert elbo == pytest.approx(truth - 1.847, abs=0.05)
    assert elbo < iwae[1] + 0.1 and iwae[1] < iwae[10] < iwae[100] < iwae[1000] <= truth + 0.01
    assert iwae[1000] == pytest.approx(truth, rel=0.01)


def test_second_stage_with_a_standard_normal_marginal_leaves_the_bound_unchanged():
    """dec2(u) = c u, gamma_z^2 = 1 - c^2 and the exact q2(u|z) = N(c z, 1 - c^2): p(z) = N(0, 1)."""

    class Stage2(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.c = c

        def encode(self, z):
            return self.c * z, torch.full_like(z, math.log(1 - self.c**2))

        def decode(self, u):
            return self.c * u

    model, y, c = LinearGaussian(shift=0.2), data(), 0.6
    d = draw(model, y, samples=20, seed=3, stage2=Stage2(c), gamma_z=math.sqrt(1 - c**2), prior_samples=5)
    assert torch.allclose(d.log_prior2_iwae, d.log_prior, atol=1e-5)  # the inner weights are constant
    assert d.bounds(model.g, two_stage=True)["iwae"] == pytest.approx(d.bounds(model.g)["iwae"], abs=1e-5)


def test_gamma_test_maximises_the_elbo_and_metrics_cover_both_gammas():
    model, y = LinearGaussian(shift=0.1), data()
    d = draw(model, y, samples=8, seed=4)
    g = d.gamma_test()
    assert g == pytest.approx(math.sqrt(float(d.sse.double().mean())))  # D = 1
    nll = {f: d.bounds(g * f)["elbo"] for f in (0.9, 1.0, 1.1)}
    assert nll[1.0] < nll[0.9] and nll[1.0] < nll[1.1]
    m = likelihood_metrics(d, gamma_trained=0.8, two_stage=False)
    assert m["gamma_trained"] == 0.8 and m["gamma_test"] == g
    assert m["nll_iwae_stage1_gamma_test"] == pytest.approx(d.bounds(g)["iwae"])
    assert m["bpd_elbo_stage1_gamma_trained"] == pytest.approx(bits_per_dim(d.bounds(0.8)["elbo"], 1))
    assert "nll_iwae_stage1_gamma_trained" not in likelihood_metrics(d, gamma_trained=0.0, two_stage=False)


def test_bits_per_dim_by_hand():
    # 1000 nats over 784 values of [0, 1]: 1000 / (784 ln 2) + log2(256) = 1.84017... + 8
    assert bits_per_dim(1000.0, 784) == pytest.approx(9.840172, abs=1e-6)
    assert bits_per_dim(0.0, 10) == 8.0  # the uniform density on [0, 1]^D codes 8 bits a value
    assert bits_per_dim(-784 * math.log(256), 784) == pytest.approx(0.0)


def test_dequantise_stays_in_each_value_bin():
    x = torch.randint(0, 256, (50, 1, 4, 4), dtype=torch.uint8)
    y = dequantise(x, torch.Generator().manual_seed(0))
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert ((y * 256 >= x.float()) & (y * 256 < x.float() + 1)).all()


def test_gamma_iwae_maximises_the_iwae_bound_and_sits_below_gamma_test():
    # The IWAE bound's optimum, not the ELBO's: checked against a fine brute-force grid.
    model, y = LinearGaussian(shift=0.1), data()
    d = draw(model, y, samples=8, seed=4)
    g = d.gamma_iwae()
    grid = [d.gamma_test() * math.exp(-3 + i / 1000) for i in range(3001)]
    brute = min(grid, key=lambda x: d.bounds(x)["iwae"])
    assert g == pytest.approx(brute, rel=2e-3)
    assert d.bounds(g)["iwae"] <= d.bounds(d.gamma_test())["iwae"]
    assert g < d.gamma_test()  # K = 8 draws: the log-mean-exp weighs the small-sse draws most
    m = likelihood_metrics(d, gamma_trained=0.8, two_stage=False)
    assert m["gamma_iwae_stage1"] == g


def test_the_iwae_optimal_bound_is_cross_fitted_never_scored_on_the_items_that_chose_gamma():
    model, y = LinearGaussian(shift=0.1), data()
    d = draw(model, y, samples=8, seed=4)
    even, odd = d.rows(slice(0, None, 2)), d.rows(slice(1, None, 2))
    by_hand = (
        odd.bounds(even.gamma_iwae())["iwae"] * len(odd.sse) + even.bounds(odd.gamma_iwae())["iwae"] * len(even.sse)
    ) / len(d.sse)
    m = likelihood_metrics(d, gamma_trained=0.8, two_stage=False)
    assert m["nll_iwae_stage1_gamma_iwae"] == pytest.approx(by_hand, rel=1e-12)
    assert m["bpd_iwae_stage1_gamma_iwae"] == pytest.approx(bits_per_dim(by_hand, 1))
    # chosen and scored on the same items is optimistic: each half at its own optimum is no worse
    assert even.bounds(even.gamma_iwae())["iwae"] <= even.bounds(odd.gamma_iwae())["iwae"]
    assert odd.bounds(odd.gamma_iwae())["iwae"] <= odd.bounds(even.gamma_iwae())["iwae"]
    assert even.gamma_iwae() != odd.gamma_iwae()
