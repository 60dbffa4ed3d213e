"""Diagnostics against direct computations on constructed models."""

import pytest
import torch
from torch import nn

from pipeline.balance.fixed import Fixed
from pipeline.models import VAE, ConvVAE
from pipeline.training.diagnostics import gradient_norms, latent_statistics, latent_summary

pytestmark = pytest.mark.quick  # unit tests: no pipeline run (`pytest -m quick`, the edit-test loop)


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


def test_latent_statistics_match_the_analytic_values():
    torch.manual_seed(0)
    x = torch.randn(20000, 4)  # x ~ N(0, I): mu_j = w_j x_j has mean 0 and variance w_j^2
    stats = latent_statistics(Constructed(), x)
    w2, s2 = [4.0, 0.25, 0.0025, 0.0, 0.0], [0.5, 1.0, 1.0, 0.25, 1.0]
    assert stats["var_mu"].tolist() == pytest.approx(w2, rel=0.03, abs=1e-12)
    assert latent_summary(stats)["active_units"] == 2  # Var(mu) > 0.01: dims 0 and 1, not 2 (0.0025)
    assert stats["e_sigma2"].tolist() == pytest.approx(s2, rel=1e-6)
    assert stats["variance_law"].tolist() == pytest.approx([4.5, 1.25, 1.0025, 0.25, 1.0], rel=0.03)
    # KL_j = 1/2 (E[mu_j^2] + sigma_j^2 - log sigma_j^2 - 1) = 1/2 (w_j^2 + s_j - log s_j - 1), by hand:
    # 1/2 (4 + 0.5 + 0.6931 - 1), 1/2 (0.25), 1/2 (0.0025), 1/2 (0.25 + 1.3863 - 1), 0
    assert stats["kl"].tolist() == pytest.approx([2.096574, 0.125, 0.00125, 0.318147, 0.0], rel=0.03, abs=1e-9)


def test_gradient_norms_match_the_hand_derived_gradients_and_leave_no_trace():
    """Constructed model: mu = W x, x_hat = V mu + c (no sampling in its forward), fixed beta.
    loss = mean_b |V W x_b + c - x_b|^2 + beta mean_b 1/2 |W x_b|^2 + const, so with r_b = x_hat_b - x_b:
    d rec / dW = 2 V^T mean_b(r_b x_b^T), d KL / dW = W mean_b(x_b x_b^T), d rec / dV = 2 mean_b(r_b mu_b^T),
    d rec / dc = 2 mean_b r_b; the KL does not reach V or c."""
    torch.manual_seed(0)
    model, beta = Constructed(), 0.3
    x = torch.randn(16, 4)
    rng = torch.get_rng_state()
    norms = gradient_norms(model, Fixed(beta=beta), x)
    assert torch.equal(torch.get_rng_state(), rng)  # forked RNG: training is unaffected
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():
        W, V, c = model.enc.weight, model.dec.weight, model.dec.bias
        mu = x @ W.T
        r = mu @ V.T + c - x
        g_rec_w = 2 * V.T @ (r.T @ x) / 16
        g_kl_w = beta * W @ (x.T @ x) / 16
        g_rec_dec = torch.cat([(2 * r.T @ mu / 16).flatten(), 2 * r.mean(0)])
    assert norms["grad_rec_encoder"] == pytest.approx(float(g_rec_w.norm()), rel=1e-5)
    assert norms["grad_kl_encoder"] == pytest.approx(float(g_kl_w.norm()), rel=1e-5)
    assert norms["grad_rec_decoder"] == pytest.approx(float(g_rec_dec.norm()), rel=1e-5)
    share = float(g_kl_w.norm() / (g_kl_w.norm() + g_rec_w.norm()))
    assert norms["kl_grad_share"] == pytest.approx(share, rel=1e-5)


def test_gradient_norms_on_a_sampling_model_leave_training_untouched():
    torch.manual_seed(0)
    model, x = ConvVAE(1, 8, 4, base_channels=4).train(), torch.rand(16, 1, 8, 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    norms = gradient_norms(model, Fixed(beta=0.1), x)
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics too (eval mode)
    assert all(p.grad is None for p in model.parameters()) and norms["grad_kl_encoder"] > 0


def test_code_fit_measures_stage2_against_its_prior_by_hand():
    """A stand-in stage 2 with mu2(z) = 2 z, sigma2 = 1 and dec2(u) = u / 2: it reconstructs
    the codes exactly, and its aggregate posterior's covariance is 4 Cov(z) + I."""
    from pipeline.training.diagnostics import code_fit

    class Doubling(torch.nn.Module):
        def encode(self, z):
            return 2 * z, torch.zeros_like(z)

        def decode(self, u):
            return u / 2

    z = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0], [0.0, -3.0]])
    cov = 4 * torch.cov(z.T).double() + torch.eye(2, dtype=torch.float64)
    fit = code_fit(Doubling(), z)
    assert fit["rel_mse"] == 0.0
    assert fit["u_mean_rms"] == pytest.approx(float((2 * z.mean(0)).pow(2).mean().sqrt()))
    assert fit["u_cov_error"] == pytest.approx(float(torch.linalg.matrix_norm(cov - torch.eye(2)) / 2))
    assert fit["active_units"] == 2
