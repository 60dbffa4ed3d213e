"""Balancing strategies and the KL: values and gradients against hand computations."""

import math

import pytest
import torch

from pipeline import PipelineError
from pipeline.balance import STRATEGIES, build_balance, kl_divergence
from pipeline.balance.annealed import Annealed
from pipeline.balance.fixed import Fixed
from pipeline.balance.learned_gamma import LearnedGamma
from pipeline.balance.running_gamma import RunningGamma
from pipeline.balance.sigma import Sigma

SSE = ((0.01 + 0.09) + (0.04 + 0.04 + 0.01)) / 2  # per-image sum of squared errors of batch(), batch mean
MSE = SSE / 4  # per value (D = 4)


def batch():
    x = torch.tensor([[0.0, 1.0, 0.5, 0.25], [1.0, 0.0, 0.5, 0.75]])
    x_hat = torch.tensor([[0.1, 0.7, 0.5, 0.25], [0.8, 0.2, 0.4, 0.75]], requires_grad=True)
    mu = torch.tensor([[0.5, -1.0], [0.0, 2.0]], requires_grad=True)
    logvar = torch.tensor([[0.0, math.log(0.25)], [math.log(4.0), 0.0]], requires_grad=True)
    return x, x_hat, mu, logvar


def test_kl_matches_closed_form_by_hand():
    _, _, mu, logvar = batch()
    # 1/2 sum(mu^2 + sigma^2 - log sigma^2 - 1) per item
    item0 = 0.5 * ((0.25 + 1 - 0 - 1) + (1 + 0.25 - math.log(0.25) - 1))
    item1 = 0.5 * ((0 + 4 - math.log(4.0) - 1) + (4 + 1 - 0 - 1))
    assert kl_divergence(mu, logvar).tolist() == pytest.approx([item0, item1])


def test_kl_matches_torch_distributions():
    torch.manual_seed(0)
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    expected = torch.distributions.kl_divergence(q, p).sum(1)
    assert torch.allclose(kl_divergence(mu, logvar), expected, atol=1e-6)


def test_running_gamma_update_by_hand():
    bal = RunningGamma(momentum=0.99)
    assert bal.gamma == 1.0  # a fresh run starts at mse_run = 1
    x, x_hat, mu, logvar = batch()
    t = bal(x, x_hat, mu, logvar)
    batch_mse = (0.01 + 0.09 + 0 + 0 + 0.04 + 0.04 + 0.01 + 0) / 8
    assert t.mse.item() == pytest.approx(batch_mse)
    bal.step(t)
    expected = 0.99 * 1.0 + 0.01 * batch_mse
    assert bal.mse_run.item() == pytest.approx(expected)
    assert bal.gamma == pytest.approx(math.sqrt(expected))


def test_running_gamma_min_clamp_never_increases():
    bal = RunningGamma(momentum=0.9)
    bal.mse_run.fill_(0.1)
    worse = bal(torch.zeros(1, 4), torch.ones(1, 4), torch.zeros(1, 2), torch.zeros(1, 2))  # batch mse = 1
    bal.step(worse)
    assert bal.mse_run.item() == pytest.approx(0.1)  # min(0.1, 0.9 * 0.1 + 0.1 * 1) = 0.1
    unclamped = RunningGamma(momentum=0.9, min_clamp=False)
    unclamped.mse_run.fill_(0.1)
    unclamped.step(worse)
    assert unclamped.mse_run.item() == pytest.approx(0.19)


def test_running_gamma_loss_value_and_beta_eff():
    bal = RunningGamma(k=2.0)
    bal.mse_run.fill_(0.04)
    x, x_hat, mu, logvar = batch()
    t = bal(x, x_hat, mu, logvar)
    sse = ((0.01 + 0.09) + (0.04 + 0.04 + 0.01)) / 2  # per image, averaged over the batch
    kl = kl_divergence(mu, logvar).mean().item()
    assert t.rec.item() == pytest.approx(sse / (2 * 0.04))
    assert t.loss.item() == pytest.approx(sse / (2 * 0.04) + 2.0 * kl)
    assert t.gamma == pytest.approx(0.2)
    assert t.beta_eff == pytest.approx(2 * 2.0 * 0.04 / 4)  # 2 k mse_run / D


def test_running_gamma_gets_no_gradient_and_scales_the_reconstruction_gradient():
    bal = RunningGamma()
    bal.mse_run.fill_(0.05)
    assert list(bal.parameters()) == []  # nothing for the optimiser
    x, x_hat, mu, logvar = batch()
    t = bal(x, x_hat, mu, logvar)
    t.rec.backward()
    assert bal.mse_run.grad is None and not bal.mse_run.requires_grad
    # grad(rec) = grad(sse) / (2 mse_run), with sse = per-image sum averaged over the batch
    x_hat2 = x_hat.detach().clone().requires_grad_(True)
    ((x_hat2 - x).pow(2).sum(1).mean()).backward()
    assert torch.allclose(x_hat.grad, x_hat2.grad / (2 * 0.05))


def test_fixed_loss_by_hand():
    x, x_hat, mu, logvar = batch()
    t = Fixed(beta=0.1)(x, x_hat, mu, logvar)
    assert t.loss.item() == pytest.approx(SSE + 0.1 * kl_divergence(mu, logvar).mean().item())
    t.loss.backward()
    x_hat2 = x_hat.detach().clone().requires_grad_(True)
    ((x_hat2 - x).pow(2).sum(1).mean()).backward()
    assert torch.allclose(x_hat.grad, x_hat2.grad)  # gradient of sse, unscaled
    assert torch.allclose(mu.grad, 0.1 * mu.detach() / 2)  # d(beta * mean KL)/d mu = beta * mu / B
    assert t.gamma == pytest.approx(math.sqrt(0.05))
    assert t.beta_eff == pytest.approx(0.1 / 4)


def test_annealed_linear_schedule_hits_its_endpoints():
    bal = Annealed(beta=0.5, anneal_steps=100)
    assert [bal.beta_at(t) for t in (0, 50, 100, 1000)] == pytest.approx([0.0, 0.25, 0.5, 0.5])
    x, x_hat, mu, logvar = batch()
    assert bal(x, x_hat, mu, logvar).loss.item() == pytest.approx(SSE)  # beta_0 = 0: KL switched off
    for _ in range(100):
        bal.step(None)
    t = bal(x, x_hat, mu, logvar)
    assert t.kl_weight == 0.5 and t.loss.item() == pytest.approx(SSE + 0.5 * kl_divergence(mu, logvar).mean().item())
    assert t.beta_eff == pytest.approx(0.5 / 4) and t.gamma == pytest.approx(0.5)


def test_annealed_cyclical_schedule_restarts():
    bal = Annealed(beta=1.0, anneal_steps=100, cyclical=True, ramp_fraction=0.5)
    values = [bal.beta_at(t) for t in (0, 25, 50, 99, 100, 125, 150)]
    assert values == pytest.approx([0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0])


def test_learned_gamma_loss_and_gradient_by_hand():
    bal = LearnedGamma()
    assert [n for n, _ in bal.named_parameters()] == ["log_gamma"] and bal.gamma == 1.0
    with torch.no_grad():
        bal.log_gamma.fill_(math.log(0.5))
    x, x_hat, mu, logvar = batch()
    t = bal(x, x_hat, mu, logvar)
    nll = SSE / (2 * 0.25) + 4 * math.log(0.5) + 2 * math.log(2 * math.pi)
    assert t.rec.item() == pytest.approx(nll)
    assert t.loss.item() == pytest.approx(nll + kl_divergence(mu, logvar).mean().item())
    t.loss.backward()
    # d/d log gamma [sse / (2 gamma^2) + D log gamma] = -sse / gamma^2 + D
    assert bal.log_gamma.grad.item() == pytest.approx(-SSE / 0.25 + 4)
    assert t.beta_eff == pytest.approx(2 * 0.25 / 4)


def test_sigma_sets_gamma_to_the_batch_mse_and_detaches_it():
    bal = Sigma()
    x, x_hat, mu, logvar = batch()
    t = bal(x, x_hat, mu, logvar)
    log_gamma = -6 + math.log1p(math.exp(0.5 * math.log(MSE) + 6))  # soft clip, ~ 1/2 log mse here
    assert t.gamma == pytest.approx(math.exp(log_gamma)) and t.gamma == pytest.approx(math.sqrt(MSE), rel=0.02)
    assert bal.gamma == pytest.approx(t.gamma)
    assert t.rec.item() == pytest.approx(SSE / (2 * t.gamma**2) + 4 * log_gamma + 2 * math.log(2 * math.pi))
    t.rec.backward()
    x_hat2 = x_hat.detach().clone().requires_grad_(True)
    ((x_hat2 - x).pow(2).sum(1).mean()).backward()
    assert torch.allclose(x_hat.grad, x_hat2.grad / (2 * t.gamma**2))  # gamma is a constant in the gradient


def test_sigma_soft_clip_keeps_log_gamma_above_its_floor():
    t = Sigma(min_log_gamma=-6.0)(torch.zeros(1, 4), torch.zeros(1, 4), torch.zeros(1, 2), torch.zeros(1, 2) + 1e-9)
    assert math.log(t.gamma) >= -6.0 and math.isfinite(t.loss.item())


def test_only_learned_gamma_has_parameters():
    for name, cls in STRATEGIES.items():
        assert bool(list(cls().parameters())) == (name == "learned_gamma"), name


def test_build_balance_from_params():
    bal = build_balance({"strategy": "running_gamma", "momentum": 0.95, "min_clamp": False, "k": 4.0, "beta": 1.0})
    assert isinstance(bal, RunningGamma) and (bal.momentum, bal.min_clamp, bal.k) == (0.95, False, 4.0)
    assert isinstance(build_balance({"strategy": "fixed", "beta": 0.1}), Fixed)


@pytest.mark.parametrize(
    "cfg, message",
    [
        ({"strategy": "nope"}, "unknown strategy 'nope'"),
        ({"strategy": "fixed", "betta": 0.1}, "unknown key(s) betta"),
    ],
)
def test_build_balance_errors(cfg, message):
    with pytest.raises(PipelineError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_balance(cfg, "train.balance")
