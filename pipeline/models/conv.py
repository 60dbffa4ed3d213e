"""``conv``: the small convolutional VAE for quick runs (ours)."""

import torch
from torch import nn

from pipeline.models.base import VAE, register


@register("conv")
class ConvVAE(VAE):
    """Small convolutional VAE for quick runs.

    Encoder: 3x3 conv to ``base_channels``, then ``num_down`` stride-2 4x4 convs that
    halve the resolution and double the channels (BN + ReLU), flatten, linear heads
    for mu and log sigma^2. Decoder mirrors it with transposed convs and ends in a
    3x3 conv and a sigmoid. ``image_size`` must be divisible by 2**num_down. Settings:
    :class:`pipeline.config.choices.ConvParams`.
    """

    ENCODER = ("encoder", "mu", "logvar")
    DECODER = ("fc_dec", "decoder")

    def __init__(self, channels: int, image_size: int, latent_dim: int, **params):
        super().__init__()
        base_channels, num_down = (p := self.settings(params)).base_channels, p.num_down
        if image_size % (2**num_down):
            raise ValueError(f"image_size {image_size} is not divisible by 2**num_down = {2**num_down}")
        self.latent_dim = latent_dim
        self.bottom = image_size // 2**num_down
        self.top_channels = base_channels * 2**num_down

        enc = [nn.Conv2d(channels, base_channels, 3, 1, 1), nn.BatchNorm2d(base_channels), nn.ReLU()]
        c = base_channels
        for _ in range(num_down):
            enc += [nn.Conv2d(c, 2 * c, 4, 2, 1), nn.BatchNorm2d(2 * c), nn.ReLU()]
            c *= 2
        self.encoder = nn.Sequential(*enc, nn.Flatten())
        flat = self.top_channels * self.bottom**2
        self.mu = nn.Linear(flat, latent_dim)
        self.logvar = nn.Linear(flat, latent_dim)

        dec = []
        for _ in range(num_down):
            dec += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1), nn.BatchNorm2d(c // 2), nn.ReLU()]
            c //= 2
        self.fc_dec = nn.Sequential(nn.Linear(latent_dim, flat), nn.ReLU())
        self.decoder = nn.Sequential(*dec, nn.Conv2d(c, channels, 3, 1, 1), nn.Sigmoid())

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc_dec(z).view(-1, self.top_channels, self.bottom, self.bottom)
        return self.decoder(h)
