"""Diagnostics against direct computations on constructed models."""

import pytest
import torch
from torch import nn

from pipeline.balance.fixed import Fixed
from pipeline.diagnostics import gradient_norms, latent_statistics, latent_summary
from pipeline.models import VAE, ConvVAE


class Constructed(VAE):
    """mu = x @ W (first 3 of 5 dims depend on x with known scales), fixed log sigma^2; decoder linear."""

    ENCODER = ("enc",)
    DECODER = ("dec",)

    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(4, 5, bias=False)
        with torch.no_grad():
            self.enc.weight.zero_()
            self.enc.weight[0, 0], self.enc.weight[1, 1], self.enc.weight[2, 2] = 2.0, 0.5, 0.05
        self.dec = nn.Linear(5, 4)
        self.logvar = torch.log(torch.tensor([0.5, 1.0, 1.0, 0.25, 1.0]))

    def encode(self, x):
        return self.enc(x), self.logvar.expand(len(x), 5)

    def forward(self, x):
        mu, logvar = self.encode(x)
        return self.dec(mu), mu, logvar


def test_latent_statistics_match_a_direct_computation():
    torch.manual_seed(0)
    x = torch.randn(4000, 4, dtype=torch.float64).float()
    stats = latent_statistics(Constructed(), x)
    # Var(mu_j) = w_j^2 Var(x_j) ~ 4, 0.25, 0.0025, 0, 0: dims 0 and 1 active (> 0.01), dim 2 not
    mu = Constructed().encode(x)[0].double()
    assert torch.allclose(stats["var_mu"], mu.var(0), rtol=1e-5)
    assert stats["var_mu"].tolist() == pytest.approx([4.0, 0.25, 0.0025, 0, 0], rel=0.05)
    assert latent_summary(stats)["active_units"] == 2
    assert stats["e_sigma2"].tolist() == pytest.approx([0.5, 1.0, 1.0, 0.25, 1.0], rel=1e-5)
    direct = mu.var(0) + torch.tensor([0.5, 1.0, 1.0, 0.25, 1.0], dtype=torch.float64)
    assert torch.allclose(stats["variance_law"], direct, rtol=1e-5)
    # KL_j = E[mu_j^2 + sigma_j^2 - log sigma_j^2 - 1] / 2
    kl = 0.5 * (mu.pow(2).mean(0) + torch.tensor([0.5, 1, 1, 0.25, 1.0]) - torch.log(torch.tensor([0.5, 1, 1, 0.25, 1.0])) - 1)
    assert torch.allclose(stats["kl"], kl.double(), rtol=1e-4)


def test_gradient_norms_match_autograd_and_leave_no_trace():
    torch.manual_seed(0)
    model, bal = ConvVAE(1, 8, 4, base_channels=4), Fixed(beta=0.1)
    x = torch.rand(16, 1, 8, 8)
    rng = torch.get_rng_state()
    norms = gradient_norms(model, bal, x)
    assert torch.equal(torch.get_rng_state(), rng)  # forked RNG: training is unaffected
    assert all(p.grad is None for p in model.parameters())
    # direct computation with the same noise
    torch.manual_seed(123)
    model.eval()
    with torch.random.fork_rng():
        torch.set_rng_state(rng)
        x_hat, mu, logvar = model(x)
    t = bal(x, x_hat, mu, logvar)
    enc = model.encoder_parameters()
    g_kl = torch.autograd.grad(0.1 * t.kl, enc, retain_graph=True)
    g_rec = torch.autograd.grad(t.rec, enc)
    kl_enc = torch.sqrt(sum((g**2).sum() for g in g_kl)).item()
    rec_enc = torch.sqrt(sum((g**2).sum() for g in g_rec)).item()
    assert norms["grad_kl_encoder"] == pytest.approx(kl_enc, rel=1e-4)
    assert norms["grad_rec_encoder"] == pytest.approx(rec_enc, rel=1e-4)
    assert norms["kl_grad_share"] == pytest.approx(kl_enc / (kl_enc + rec_enc), rel=1e-4)
    assert norms["grad_rec_decoder"] > 0


def test_stronger_kl_weight_raises_its_gradient_share():
    torch.manual_seed(0)
    model, x = ConvVAE(1, 8, 4, base_channels=4), torch.rand(16, 1, 8, 8)
    shares = [gradient_norms(model, Fixed(beta=b), x)["kl_grad_share"] for b in (0.01, 0.1, 1.0, 10.0)]
    assert shares == sorted(shares) and shares[0] < shares[-1]
