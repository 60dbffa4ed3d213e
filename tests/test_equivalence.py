"""What the report says about a KL weight, checked: the beta <-> decoder-variance conversion
for the three reconstruction losses against hand values, that the KL sends no gradient to
the decoder, and what a global scale of the loss does under SGD and under Adam."""

import pytest
import torch

from pipeline.balance import kl_divergence
from pipeline.models import DenseVAE
from pipeline.reports.equivalence import beta_for_variance, variance_for_beta

pytestmark = pytest.mark.quick  # unit tests: no pipeline run (`pytest -m quick`, the edit-test loop)

MNIST_D = 28 * 28


@pytest.mark.parametrize(
    "loss, beta, gamma2",
    [
        ("sse", 0.1, 0.05),  # sse + 0.1 KL = 0.1 (sse / (2 * 0.05) + KL)
        ("sse", 1.0, 0.5),
        ("mse_mean", 0.1, 39.2),  # mse + 0.1 KL = (sse + 78.4 KL) / 784: gamma^2 = 78.4 / 2
        ("mse_mean", 2 * 0.0087 / MNIST_D, 0.0087),  # the beta that matches an MNIST test MSE of 0.0087
    ],
)
def test_beta_and_variance_by_hand(loss, beta, gamma2):
    assert variance_for_beta(beta, MNIST_D, loss) == pytest.approx(gamma2)
    assert beta_for_variance(gamma2, MNIST_D, loss) == pytest.approx(beta)


def test_bce_has_no_variance_and_unknown_losses_are_refused():
    assert variance_for_beta(0.1, MNIST_D, "bce") is None and beta_for_variance(0.05, MNIST_D, "bce") is None
    with pytest.raises(ValueError, match="unknown reconstruction loss 'l1'"):
        beta_for_variance(0.05, MNIST_D, "l1")


def test_the_two_squared_error_forms_are_one_loss_up_to_a_constant():
    """sse + beta_sse KL = D (mse + beta_mean KL) when both betas come from the same gamma^2."""
    torch.manual_seed(0)
    x, x_hat = torch.rand(5, MNIST_D), torch.rand(5, MNIST_D)
    kl = torch.rand(5)
    sse, mse = (x - x_hat).pow(2).sum(1), (x - x_hat).pow(2).mean(1)
    gamma2 = 0.0087
    summed = sse + beta_for_variance(gamma2, MNIST_D, "sse") * kl
    mean = mse + beta_for_variance(gamma2, MNIST_D, "mse_mean") * kl
    assert torch.allclose(summed, MNIST_D * mean)
    assert torch.allclose(summed, 2 * gamma2 * (sse / (2 * gamma2) + kl))  # the Gaussian decoder's loss


def _parts(model):
    """(encoder parameters, decoder parameters), by the model's own lists of its parts."""
    return [
        [p for name in names for p in getattr(model, name).parameters()] for names in (model.ENCODER, model.DECODER)
    ]


def _vae():
    """A VAE without BatchNorm (a bias before BatchNorm has no gradient but float noise, which
    Adam's division turns into steps of random sign: no use for comparing runs)."""
    torch.manual_seed(0)
    return DenseVAE(16, width=32, depth=2)


def _loss(model, x, beta, scale=1.0):
    torch.manual_seed(1)  # the same reparameterisation noise for every call
    x_hat, mu, logvar = model(x)
    return scale * ((x_hat - x).pow(2).flatten(1).sum(1).mean() + beta * kl_divergence(mu, logvar).mean())


def test_the_kl_sends_no_gradient_to_the_decoder():
    model, x = _vae(), torch.rand(6, 16)
    _, mu, logvar = model(x)
    kl_divergence(mu, logvar).mean().backward()
    enc, dec = _parts(model)
    assert all(p.grad is None for p in dec)
    assert all(p.grad is not None for p in enc) and any(p.grad.abs().sum() > 0 for p in enc)


def _steps(opt_factory, beta, scale, n=5):
    model, x = _vae(), torch.rand(6, 16, generator=torch.Generator().manual_seed(2))
    opt = opt_factory(model)
    for _ in range(n):
        opt.zero_grad()
        _loss(model, x, beta, scale).backward()
        opt.step()
    return model


def test_under_adam_a_global_scale_of_the_loss_changes_nothing():
    """sse + 0.1 KL and 10 sse + KL (= the Gaussian decoder with gamma^2 = 0.05) train the same under
    Adam, up to its eps (set far below every gradient here; at 1e-8 a gradient near 1e-8 steps differently)."""
    adam = lambda m: torch.optim.Adam(m.parameters(), lr=1e-2, eps=1e-20)  # noqa: E731
    a, b = _steps(adam, 0.1, 1.0), _steps(adam, 0.1, 10.0)  # 10 (sse + 0.1 KL) = 10 sse + KL
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, rtol=1e-4, atol=1e-6)


def test_under_sgd_a_global_scale_is_a_learning_rate():
    sgd = lambda lr: lambda m: torch.optim.SGD(m.parameters(), lr=lr)  # noqa: E731
    start = _vae()
    one = _steps(sgd(1e-4), 0.1, 10.0, n=1)  # 10x the loss at lr ...
    ten = _steps(sgd(1e-3), 0.1, 1.0, n=1)  # ... is the loss at 10x the lr
    moved = [(p - s).abs().max() for p, s in zip(one.parameters(), start.parameters())]
    assert max(moved) > 0
    for p, q in zip(one.parameters(), ten.parameters()):
        assert torch.allclose(p, q, rtol=1e-4, atol=1e-7)


def test_beta_changes_the_encoders_step_not_the_decoders():
    """One Adam step from the same weights and noise: the decoder moves the same for beta 1 and 0.1
    (its gradient is the reconstruction term's alone), the encoder does not."""
    adam = lambda m: torch.optim.Adam(m.parameters(), lr=1e-2)  # noqa: E731
    a, b = _steps(adam, 1.0, 1.0, n=1), _steps(adam, 0.1, 1.0, n=1)
    (enc_a, dec_a), (enc_b, dec_b) = _parts(a), _parts(b)
    assert all(torch.equal(p, q) for p, q in zip(dec_a, dec_b))
    assert not all(torch.equal(p, q) for p, q in zip(enc_a, enc_b))


def test_adams_step_is_about_lr_for_a_steady_gradient_and_above_7_lr_for_a_growing_one():
    """Adam's step is not bounded by lr (1 - beta1) / sqrt(1 - beta2) = 3.16 lr (Kingma & Ba 2015,
    section 2.1: the limit of a sudden jump after a long quiet spell, not a bound): for a gradient
    growing by a factor r per step, m / sqrt(v) tends to (1 - beta1) / (1 - beta1 / r) /
    sqrt((1 - beta2) / (1 - beta2 / r^2)), 7.27 at r = 1.11 (its maximum). The optimiser as the
    stages build it (pipeline/training/loop.py, ``adam``: fused, default betas)."""

    def steps(grads):
        p = torch.nn.Parameter(torch.zeros(()))
        opt = torch.optim.Adam([p], lr=1e-3, fused=True)
        out = []
        for g in grads:
            before = float(p)
            p.grad = torch.tensor(g)
            opt.step()
            out.append(before - float(p))
        return out

    assert steps([5.0] * 20_000)[-1] == pytest.approx(1e-3, rel=1e-3)
    assert steps([1e-30] * 19_999 + [5.0])[-1] == pytest.approx(1e-3 * 0.1 / 0.001**0.5, rel=1e-3)  # 3.16e-3
    r, b1, b2 = 1.11, 0.9, 0.999
    limit = (1 - b1) / (1 - b1 / r) / ((1 - b2) / (1 - b2 / r**2)) ** 0.5
    growing = steps([1.0] * 10_000 + [r**k for k in range(1, 301)])  # steady until bias correction is spent
    assert limit == pytest.approx(7.27, abs=0.005)
    assert growing[-1] > 7e-3  # above 7 lr: the old sentence's "at most 3.2 lr" is false
    assert growing[-1] == pytest.approx(1e-3 * limit, rel=1e-3)


def test_a_growing_loss_scale_makes_adams_steps_larger_than_a_fixed_scales():
    """Running gamma's loss is 1 / (2 gamma^2) times a fixed-beta loss, a factor that grows as gamma
    falls: the gradient's direction is the fixed-beta loss's, but Adam's RMS of past gradients lags the
    growth, so each step is larger than lr (a fixed factor, any size, steps lr)."""
    fixed, growing = torch.nn.Parameter(torch.zeros(())), torch.nn.Parameter(torch.zeros(()))
    opts = torch.optim.Adam([fixed], lr=1e-3), torch.optim.Adam([growing], lr=1e-3)
    steps = {"fixed": [], "growing": []}
    for t in range(2000):
        scale = 1.0 if t < 1000 else 1.0 * 1.003 ** (t - 1000)  # gamma^2 falling by 0.3 % a step
        for name, p, opt, s in (("fixed", fixed, opts[0], 1.0), ("growing", growing, opts[1], scale)):
            before = float(p)
            p.grad = torch.tensor(s)
            opt.step()
            steps[name].append(before - float(p))
    assert max(steps["fixed"][1000:]) == pytest.approx(1e-3, rel=1e-3)
    assert min(steps["growing"][1100:]) > 1.2e-3  # the lag: every step well above lr
