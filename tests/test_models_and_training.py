"""The two VAEs and the shared training loop."""

import pytest
import torch

from pipeline import PipelineError
from pipeline.balance.running_gamma import RunningGamma
from pipeline.models import ConvVAE, DenseVAE
from pipeline.train import fit


@pytest.mark.parametrize("channels, size, num_down", [(1, 8, 2), (1, 28, 2), (3, 32, 3)])
def test_conv_vae_shapes(channels, size, num_down):
    model = ConvVAE(channels, size, latent_dim=6, base_channels=8, num_down=num_down)
    x = torch.rand(3, channels, size, size)
    x_hat, mu, logvar = model(x)
    assert x_hat.shape == x.shape and mu.shape == logvar.shape == (3, 6)
    assert x_hat.min() >= 0 and x_hat.max() <= 1  # sigmoid decoder


def test_conv_vae_rejects_indivisible_size():
    with pytest.raises(ValueError, match="not divisible"):
        ConvVAE(1, 28, 4, num_down=3)


def test_dense_vae_shapes():
    model = DenseVAE(dim=5, width=16, depth=3)
    z_hat, mu, logvar = model(torch.randn(7, 5))
    assert z_hat.shape == mu.shape == logvar.shape == (7, 5)


def test_fit_running_gamma_history():
    torch.manual_seed(0)
    data = (torch.rand(64, 1, 8, 8) * 255).to(torch.uint8)
    model, bal = ConvVAE(1, 8, 4, base_channels=4), RunningGamma()
    seen = []
    history = fit(model, bal, lambda e: data, epochs=3, batch_size=16, lr=1e-3, desc="t", diag_x=data[:32],
                  on_epoch=lambda row, timing, latent: seen.append((row, timing, latent)))  # fmt: skip
    assert [r["epoch"] for r in history] == [1, 2, 3] and len(seen) == 3
    assert {"loss", "rec", "kl", "mse", "gamma", "beta_eff", "kl_common", "loss_common", "grad_rec_encoder",
            "grad_kl_encoder", "kl_grad_share", "active_units", "variance_law_mean"} <= set(history[0])  # fmt: skip
    for r in history:
        assert r["loss_common"] == pytest.approx(r["mse"] + r["kl_common"])
    assert seen[0][2]["kl"].shape == (4,)
    gammas = [r["gamma"] for r in history]
    assert all(a >= b for a, b in zip(gammas, gammas[1:])) and gammas[-1] < 1  # min-clamped: never increases
    assert bal.gamma <= gammas[-1]
    assert seen[0][1]["images_per_s"] > 0


def test_fit_stops_on_nan_with_epoch_and_step():
    data = torch.full((32, 1, 8, 8), float("nan"))
    with pytest.raises(PipelineError, match=r"epoch 1, step 1"):
        fit(ConvVAE(1, 8, 4, base_channels=4), RunningGamma(), lambda e: data, epochs=2, batch_size=16, lr=1e-3, desc="t")
