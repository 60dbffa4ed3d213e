"""``resnet_ref``: the reference ResNet of Dai & Wipf's TwoStageVAE, which Asperti &
Trentin's code reuses, layer for layer (CIFAR-10, CelebA)."""

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.base import VAE, check_scales, register

# The reference networks, from github daib13/TwoStageVAE (commit 8718623) network/util.py
# and network/two_stage_vae_model.py; Asperti's computed_gamma.py repeats the ResNet.
REF_BN_MOMENTUM = 0.001  # util.py batch_norm: moving averages with decay 0.999, eps 1e-5


def _ref_bn(c: int, dims: int = 2) -> nn.Module:
    return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(c, eps=1e-5, momentum=REF_BN_MOMENTUM)


class SameDown(nn.Conv2d):
    """A stride-2 3x3 convolution padded as TF's ``padding='same'`` pads it (util.py
    downsample, line 132: tf.layers.conv2d(x, out_dim, kernel_size, 2, 'same')): the total padding, (out - 1) * 2
    + 3 - n = 1 on an even side n, goes after the input (0 before, 1 after), where
    ``padding=1`` would put one on each side and shift the sampling grid by a pixel:
    output[i] = sum_k w[k] input[2i + k]."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_in, c_out, 3, 2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (0, 1, 0, 1)))


class SameUp(nn.ConvTranspose2d):
    """A stride-2 3x3 transposed convolution as TF's ``padding='same'`` computes it (util.py
    upsample, line 139: tf.layers.conv2d_transpose(x, out_dim, kernel_size, 2, 'same')): the transpose of
    :class:`SameDown`, output[j] = sum over 2i + k = j of w[k] input[i] for j < 2n; the full
    transposed convolution (2n + 1 per side) with its last row and column dropped, where
    ``padding=1, output_padding=1`` would drop the first and shift the output by a pixel."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_in, c_out, 3, 2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)[..., :-1, :-1]


class RefResBlock(nn.Module):
    """util.py res_block: (BN-ReLU-conv k x k) ``depth`` times, plus a k x k conv shortcut."""

    def __init__(self, c: int, depth: int = 2, k: int = 3):
        super().__init__()
        self.body = nn.Sequential(
            *[m for _ in range(depth) for m in (_ref_bn(c), nn.ReLU(), nn.Conv2d(c, c, k, 1, k // 2))]
        )
        self.shortcut = nn.Conv2d(c, c, k, 1, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class RefDenseResBlock(nn.Module):
    """util.py res_fc_block: (ReLU-dense) ``depth`` times, plus a dense shortcut; no BN."""

    def __init__(self, dim_in: int, width: int, depth: int = 2):
        super().__init__()
        layers, d = [], dim_in
        for _ in range(depth):
            layers += [nn.ReLU(), nn.Linear(d, width)]
            d = width
        self.body = nn.Sequential(*layers)
        self.shortcut = nn.Linear(dim_in, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


def ref_decoder_widths(image_size: int, base_channels: int) -> list[int]:
    """two_stage_vae_model.py Resnet.build_decoder1: one width per scale 2, 4, ..., image_size,
    doubling from ``base_channels`` (capped at 1024), widest first (32 px, base 32:
    512, 256, 128, 64, 32)."""
    side, width, widths = 2, base_channels, []
    while side <= image_size:
        widths.append(width)
        side, width = side * 2, min(width * 2, 1024)
    if side // 2 != image_size:
        raise ValueError(f"image_size {image_size} is not a power of two (the reference decoder doubles from 2x2)")
    return widths[::-1]


def _glorot(module: nn.Module) -> None:
    """tf.layers' default initialisation: Glorot-uniform kernels, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


@register("resnet_ref")
class ResNetRef(VAE):
    """The ResNet VAE of the reference code (two_stage_vae_model.py class Resnet), exactly.

    Encoder: 3x3 conv to ``base_channels``; ``num_scale`` scales of ``blocks_per_scale``
    :class:`RefResBlock`, a stride-2 3x3 conv doubling the channels between scales;
    global average pooling; a :class:`RefDenseResBlock` to ``fc_width``; dense heads for
    mu and log sigma (returned as log sigma^2 = 2 log sigma). Decoder: dense to a 2x2 map
    of the widest :func:`ref_decoder_widths`, then per 2x upsampling a stride-2 3x3
    transposed conv and a scale of residual blocks (the stride-2 layers padded as TF's
    'same': :class:`SameDown`, :class:`SameUp`); a 3x3 conv and a sigmoid. The decoder
    does not mirror the encoder: its width is set by the image side. Glorot-uniform
    initialisation as tf.layers. The reference's learned log gamma_x lives in the balance
    strategy here (``learned_gamma``), not in the network.
    """

    ENCODER = ("encoder", "fc_enc", "mu", "logsd")
    DECODER = ("fc_dec", "decoder")

    def __init__(self, channels: int, image_size: int, latent_dim: int, **params):
        super().__init__()
        p = self.settings(params)
        base_channels, num_scale, fc_width, blocks_per_scale = p.base_channels, p.num_scale, p.fc_width, p.blocks_per_scale
        widths = ref_decoder_widths(image_size, base_channels)
        check_scales(image_size, num_scale)
        self.latent_dim = latent_dim
        c = base_channels
        enc: list[nn.Module] = [nn.Conv2d(channels, c, 3, 1, 1)]
        for scale in range(num_scale):
            enc += [RefResBlock(c) for _ in range(blocks_per_scale)]
            if scale != num_scale - 1:
                enc.append(SameDown(c, 2 * c))
                c *= 2
        self.encoder = nn.Sequential(*enc)
        self.fc_enc = RefDenseResBlock(c, fc_width)
        self.mu = nn.Linear(fc_width, latent_dim)
        self.logsd = nn.Linear(fc_width, latent_dim)

        self.start_channels = widths[0]
        self.fc_dec = nn.Linear(latent_dim, 4 * widths[0])
        dec: list[nn.Module] = []
        for c_in, c_out in zip(widths, widths[1:]):
            dec += [
                SameUp(c_in, c_out),
                *[RefResBlock(c_out) for _ in range(blocks_per_scale)],
            ]
        self.decoder = nn.Sequential(*dec, nn.Conv2d(widths[-1], channels, 3, 1, 1), nn.Sigmoid())
        _glorot(self)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.fc_enc(self.encoder(x).mean((2, 3)))
        return self.mu(h), 2 * self.logsd(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.fc_dec(z).view(-1, self.start_channels, 2, 2))
