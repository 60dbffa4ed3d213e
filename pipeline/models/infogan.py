"""``infogan``: the reference code's InfoGAN-style network, its default for MNIST and
Fashion-MNIST, layer for layer."""

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.base import VAE, register
from pipeline.models.resnet_ref import _ref_bn


class SpectralNorm(nn.Module):
    """A conv or dense layer whose weight is divided by its largest singular value, estimated
    by one power iteration per training forward (Miyato et al. 2018; util.py spectral_norm,
    lines 8-58: one round, u and v without gradient). Adds no parameters, one buffer."""

    def __init__(self, layer: nn.Conv2d | nn.Linear):
        super().__init__()
        self.layer = layer
        self.register_buffer("u", F.normalize(torch.randn(layer.weight.shape[0]), dim=0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.layer.weight
        w2 = w.flatten(1).float()
        with torch.no_grad():
            if self.training:
                self.u.copy_(F.normalize(w2 @ F.normalize(w2.t() @ self.u, dim=0), dim=0))
            u = self.u.clone()
            v = F.normalize(w2.t() @ u, dim=0)
        w_sn = w / (u @ w2 @ v).to(w.dtype)
        if isinstance(self.layer, nn.Conv2d):
            return self.layer._conv_forward(x, w_sn, self.layer.bias)
        return F.linear(x, w_sn, self.layer.bias)


def _tf_init(module: nn.Module) -> None:
    """util.py conv2d / linear / deconv2d: N(0, 0.02) weights (truncated for conv2d), zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.trunc_normal_(m.weight, std=0.02, a=-0.04, b=0.04)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.Linear, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)


@register("infogan")
class InfoGAN(VAE):
    """The InfoGAN-style VAE of the reference code (two_stage_vae_model.py class Infogan), its
    default network for MNIST and Fashion-MNIST (demo.py: batch 64, latent 64).

    Encoder: spectral-normalised 4x4 stride-2 convs to 64 (leaky ReLU 0.2) and 128 channels
    (BN, leaky ReLU), a spectral-normalised dense layer to 1024 (BN, leaky ReLU) and one to
    2 x latent: mu and sigma = 1e-6 + softplus(.). Decoder: dense 1024 (BN, ReLU), dense to a
    128-channel map of side/4 (BN, ReLU), a 4x4 stride-2 transposed conv to 64 (BN, ReLU),
    one to the image channels, sigmoid. ``image_size`` must be divisible by 4.
    """

    ENCODER = ("encoder",)
    DECODER = ("fc_dec", "decoder")

    def __init__(self, channels: int, image_size: int, latent_dim: int, **params):
        super().__init__()
        self.settings(params)  # none to set: rejects any given
        if image_size % 4:
            raise ValueError(f"image_size {image_size} is not divisible by 4 (two stride-2 layers)")
        self.latent_dim, self.quarter = latent_dim, image_size // 4
        flat = 128 * self.quarter**2
        self.encoder = nn.Sequential(
            SpectralNorm(nn.Conv2d(channels, 64, 4, 2, 1)),
            nn.LeakyReLU(0.2),
            SpectralNorm(nn.Conv2d(64, 128, 4, 2, 1)),
            _ref_bn(128),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            SpectralNorm(nn.Linear(flat, 1024)),
            _ref_bn(1024, 1),
            nn.LeakyReLU(0.2),
            SpectralNorm(nn.Linear(1024, 2 * latent_dim)),
        )
        self.fc_dec = nn.Sequential(
            nn.Linear(latent_dim, 1024), _ref_bn(1024, 1), nn.ReLU(), nn.Linear(1024, flat), _ref_bn(flat, 1), nn.ReLU()
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(128, 64, 4, 2, 1),
            _ref_bn(64),
            nn.ReLU(),
            nn.ConvTranspose2d(64, channels, 4, 2, 1),
            nn.Sigmoid(),
        )
        _tf_init(self)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, s = self.encoder(x).chunk(2, dim=1)
        return mu, 2 * torch.log(1e-6 + F.softplus(s))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.fc_dec(z).view(-1, 128, self.quarter, self.quarter))
