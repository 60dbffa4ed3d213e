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

pytestmark = pytest.mark.quick  # unit tests: no pipeline run (`pytest -m quick`, the edit-test loop)

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


def test_running_gamma_is_moved_by_step_only_and_scales_the_reconstruction_gradient():
    bal = RunningGamma(momentum=0.5)
    bal.mse_run.fill_(0.05)
    before = bal.mse_run.clone()
    x, x_hat, mu, logvar = batch()
    opt = torch.optim.Adam([x_hat, mu, logvar, *bal.parameters()], lr=0.1)
    t = bal(x, x_hat, mu, logvar)
    t.loss.backward()
    # grad(rec) = grad(sse) / (2 mse_run): by hand, d/dx_hat of mean_b sum (x_hat - x)^2 is 2 (x_hat - x) / B
    expected = 2 * (x_hat.detach() - x) / 2 / (2 * 0.05)
    assert torch.allclose(x_hat.grad, expected)
    opt.step()  # an optimiser step over everything the loss touched leaves gamma where it was
    assert torch.equal(bal.mse_run, before)
    bal.step(t)  # min(0.05, 0.5 * 0.05 + 0.5 * MSE), MSE = 0.02375
    assert bal.mse_run.item() == pytest.approx(0.5 * 0.05 + 0.5 * MSE)


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


def test_annealed_cyclical_schedule_restarts_and_ends_each_cycle_at_full_weight():
    bal = Annealed(beta=1.0, anneal_steps=100, cyclical=True, ramp_fraction=0.5)
    values = [bal.beta_at(t) for t in (0, 25, 50, 99, 100, 101, 125, 150, 200)]
    assert values == pytest.approx([0.0, 0.5, 1.0, 1.0, 1.0, 0.02, 0.5, 1.0, 1.0])
    linear = Annealed(beta=1.0, anneal_steps=100, ramp_fraction=1.0)
    assert [Annealed(beta=1.0, anneal_steps=100, cyclical=True, ramp_fraction=1.0).beta_at(t) for t in range(101)] == [
        linear.beta_at(t) for t in range(101)
    ]  # the first cycle is the linear warm-up


def test_a_run_of_whole_cycles_saves_the_gamma_it_last_trained_under():
    bal = Annealed(beta=1.0, anneal_steps=100, cyclical=True)
    bal.steps.fill_(200)  # two whole cycles trained
    assert bal.gamma == pytest.approx(math.sqrt(0.5))


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
    # MSE = 0.02375: log gamma = -6 + log(1 + exp(log(0.02375) / 2 + 6)) = -6 + log(1 + exp(4.13002)) = -1.854130
    log_gamma = -1.854130087560251
    assert math.log(t.gamma) == pytest.approx(log_gamma, abs=1e-6)
    assert t.rec.item() == pytest.approx(
        SSE / (2 * math.exp(2 * log_gamma)) + 4 * log_gamma + 2 * math.log(2 * math.pi)
    )
    t.rec.backward()
    # gamma a constant in the gradient: 2 (x_hat - x) / B / (2 gamma^2)
    assert torch.allclose(x_hat.grad, (x_hat.detach() - x) / (2 * math.exp(2 * log_gamma)))
    assert bal.gamma == 1.0  # the saved gamma changes only in step(), after an optimiser step
    bal.step(t)
    assert bal.gamma == pytest.approx(math.exp(log_gamma))
    bal(x, x_hat.detach() * 0, mu, logvar)  # a diagnostic forward on another batch ...
    assert bal.gamma == pytest.approx(math.exp(log_gamma))  # ... leaves the training value alone


@pytest.mark.parametrize(
    "mse, log_gamma",
    [
        (1e-12, -5.999596652562023),  # -6 + log(1 + exp(-13.8155 + 6)) = -6 + 4.03e-4: held near the floor
        (0.25, -0.688202),
    ],  # -6 + log(1 + exp(-0.6931 + 6)) = -0.6931 + 0.00494: 1/2 log mse, barely clipped
)
def test_sigma_soft_clip_by_hand(mse, log_gamma):
    x_hat = torch.full((1, 4), math.sqrt(mse))
    t = Sigma(min_log_gamma=-6.0)(torch.zeros(1, 4), x_hat, torch.zeros(1, 2), torch.zeros(1, 2))
    assert math.log(t.gamma) == pytest.approx(log_gamma, abs=1e-5)


def test_sigma_without_detach_differentiates_through_gamma():
    # mse = e^-12 puts 1/2 log mse + 6 at 0, the middle of the soft clip: log gamma = -6 + log 2, so
    # gamma^2 / mse = 4 and d log gamma / d log mse = sigmoid(0) / 2 = 1/4. Through gamma, the gradient
    # of sse / (2 gamma^2) + D log gamma with respect to mse is D / (2 gamma^2) (1 + 1/2 (gamma^2 / mse - 1))
    # = 2.5 times the detached one, D / (2 gamma^2).
    x, x_hat = torch.zeros(1, 4), torch.full((1, 4), math.exp(-6), requires_grad=True)
    grads = {}
    for detach in (True, False):
        x_hat.grad = None
        Sigma(detach=detach)(x, x_hat, torch.zeros(1, 2), torch.zeros(1, 2)).rec.backward()
        grads[detach] = x_hat.grad.clone()
    assert torch.allclose(grads[False], 2.5 * grads[True], rtol=1e-4)


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
