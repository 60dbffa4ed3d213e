"""``resnet``: our compact variant of the papers' ResNet VAE."""

import torch
from torch import nn

from pipeline.models.base import VAE, check_scales, register


class ResBlock(nn.Module):
    """Residual block of this compact net: x + (BN-ReLU-conv3x3) twice, an identity shortcut (the
    reference's block has a 3x3 convolution on its shortcut: :mod:`pipeline.models.resnet_ref`)."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.Conv2d(c, c, 3, 1, 1),
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.Conv2d(c, c, 3, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DenseResBlock(nn.Module):
    """The dense residual block between the convolutions and the latent: x + (BN-ReLU-linear) twice."""

    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm1d(width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.BatchNorm1d(width),
            nn.ReLU(),
            nn.Linear(width, width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def decoder_start(image_size: int) -> tuple[int, int]:
    """(side, number of 2x upsamplings) of the decoder's first feature map: the image side
    halved while it stays even and above 2 (64 -> 2 and 5 steps, 28 -> 7 and 2)."""
    side, steps = image_size, 0
    while side % 2 == 0 and side > 2:
        side, steps = side // 2, steps + 1
    return side, steps


@register("resnet")
class ResNetVAE(VAE):
    """Our compact ResNet VAE, after the one of Dai & Wipf (2019) and Asperti & Trentin (2020)
    but not it: identity shortcuts, a decoder that mirrors the encoder's widths, PyTorch's
    padding and initialisation. The references' network, layer for layer, is ``resnet_ref``.

    Encoder: 3x3 conv to ``base_channels``; ``num_scale`` scales of ``blocks_per_scale``
    residual blocks, a stride-2 3x3 conv doubling the channels between scales; global
    average pooling; a dense layer to ``fc_width`` and a dense residual block; linear
    heads for mu and log sigma^2. Decoder: dense to ``fc_width``, a dense residual block,
    dense to a small s x s x C map (s = 2 for power-of-two sides, see
    :func:`decoder_start`), then per scale a stride-2 transposed conv halving the channels
    (not below ``base_channels``) and a residual block; BN-ReLU, 3x3 conv, sigmoid.
    ``image_size`` must be divisible by 2**(num_scale - 1). The papers' settings, which fit
    it too: CIFAR-10 num_scale 3, CelebA 64x64 num_scale 4, base 32, fc 512, latent 64.
    """

    ENCODER = ("encoder", "fc_enc", "mu", "logvar")
    DECODER = ("fc_dec", "decoder")

    def __init__(self, channels: int, image_size: int, latent_dim: int, **params):
        super().__init__()
        p = self.settings(params)
        base_channels, num_scale, fc_width, blocks_per_scale = p.base_channels, p.num_scale, p.fc_width, p.blocks_per_scale
        check_scales(image_size, num_scale)
        self.latent_dim = latent_dim
        c = base_channels
        enc: list[nn.Module] = [nn.Conv2d(channels, c, 3, 1, 1)]
        for scale in range(num_scale):
            if scale:
                enc.append(nn.Conv2d(c, 2 * c, 3, 2, 1))
                c *= 2
            enc += [ResBlock(c) for _ in range(blocks_per_scale)]
        self.encoder = nn.Sequential(*enc, nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc_enc = nn.Sequential(nn.Linear(c, fc_width), DenseResBlock(fc_width), nn.ReLU())
        self.mu = nn.Linear(fc_width, latent_dim)
        self.logvar = nn.Linear(fc_width, latent_dim)

        self.start, steps = decoder_start(image_size)
        self.start_channels = c
        self.fc_dec = nn.Sequential(
            nn.Linear(latent_dim, fc_width), DenseResBlock(fc_width), nn.ReLU(), nn.Linear(fc_width, c * self.start**2)
        )
        dec: list[nn.Module] = []
        for _ in range(steps):
            out = max(c // 2, base_channels)
            dec += [nn.ConvTranspose2d(c, out, 4, 2, 1), *[ResBlock(out) for _ in range(blocks_per_scale)]]
            c = out
        self.decoder = nn.Sequential(*dec, nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, channels, 3, 1, 1), nn.Sigmoid())

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.fc_enc(self.encoder(x))
        return self.mu(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.fc_dec(z).view(-1, self.start_channels, self.start, self.start))
