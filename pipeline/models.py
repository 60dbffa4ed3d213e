"""The two VAEs.

Stage 1, images x in [0, 1]; encoder q(z|x) = N(mu(x), diag sigma(x)^2), decoder
x_hat = sigmoid(f(z)). Architectures (``train.model.arch``):

- ``conv`` (:class:`ConvVAE`): small and quick, ours.
- ``resnet`` (:class:`ResNetVAE`): our compact variant of the papers' ResNet.
- ``resnet_ref`` (:class:`ResNetRef`): the reference ResNet of Dai & Wipf's TwoStageVAE,
  which Asperti & Trentin's code reuses, layer for layer (CIFAR-10, CelebA).
- ``infogan`` (:class:`InfoGAN`): the reference's InfoGAN-style network, its default for
  MNIST and Fashion-MNIST, layer for layer.

Stage 2 (:class:`DenseVAE`): the same on stage-1 latent codes z, with a linear decoder
output (codes are real-valued). All use the reparameterisation z = mu + sigma * eps and
expose encode (mu, log sigma^2) / decode / forward.
"""

import inspect

import torch
import torch.nn.functional as F
from torch import nn


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps, eps ~ N(0, I), sigma = exp(logvar / 2)."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


class VAE(nn.Module):
    """What both VAEs share: the split of their parameters into encoder and decoder
    (named by ``ENCODER`` / ``DECODER``), used by the gradient diagnostics."""

    ENCODER: tuple[str, ...] = ()
    DECODER: tuple[str, ...] = ()

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [p for name in self.ENCODER for p in getattr(self, name).parameters()]

    def decoder_parameters(self) -> list[nn.Parameter]:
        return [p for name in self.DECODER for p in getattr(self, name).parameters()]

    def forward(self, x: torch.Tensor):
        """(decode(z), mu, log sigma^2) with z = mu + sigma * eps drawn from q(z|x)."""
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar)), mu, logvar


def check_scales(image_size: int, num_scale: int) -> None:
    """The ResNets halve the side num_scale - 1 times: it must divide by 2**(num_scale - 1)."""
    if num_scale < 1 or image_size % 2 ** (num_scale - 1):
        raise ValueError(f"image_size {image_size} is not divisible by 2**(num_scale - 1) = {2 ** (num_scale - 1)}")


class ConvVAE(VAE):
    """Small convolutional VAE for quick runs.

    Encoder: 3x3 conv to ``base_channels``, then ``num_down`` stride-2 4x4 convs that
    halve the resolution and double the channels (BN + ReLU), flatten, linear heads
    for mu and log sigma^2. Decoder mirrors it with transposed convs and ends in a
    3x3 conv and a sigmoid. ``image_size`` must be divisible by 2**num_down.
    """

    ENCODER = ("encoder", "mu", "logvar")
    DECODER = ("fc_dec", "decoder")

    def __init__(self, channels: int, image_size: int, latent_dim: int, base_channels: int = 32, num_down: int = 2):
        super().__init__()
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


class ResBlock(nn.Module):
    """Residual block of the Dai & Wipf / Asperti ResNet: x + (BN-ReLU-conv3x3) twice."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c, 3, 1, 1), nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c, 3, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DenseResBlock(nn.Module):
    """The dense residual block between the convolutions and the latent: x + (BN-ReLU-linear) twice."""

    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(),
            nn.Linear(width, width),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def decoder_start(image_size: int) -> tuple[int, int]:
    """(side, number of 2x upsamplings) of the decoder's first feature map: the image side
    halved while it stays even and above 2 (64 -> 2 and 5 steps, 28 -> 7 and 2)."""
    side, steps = image_size, 0
    while side % 2 == 0 and side > 2:
        side, steps = side // 2, steps + 1
    return side, steps


class ResNetVAE(VAE):
    """The ResNet VAE of Dai & Wipf (2019) and Asperti & Trentin (2020).

    Encoder: 3x3 conv to ``base_channels``; ``num_scale`` scales of ``blocks_per_scale``
    residual blocks, a stride-2 3x3 conv doubling the channels between scales; global
    average pooling; a dense layer to ``fc_width`` and a dense residual block; linear
    heads for mu and log sigma^2. Decoder: dense to ``fc_width``, a dense residual block,
    dense to a small s x s x C map (s = 2 for power-of-two sides, see
    :func:`decoder_start`), then per scale a stride-2 transposed conv halving the channels
    (not below ``base_channels``) and a residual block; BN-ReLU, 3x3 conv, sigmoid.
    ``image_size`` must be divisible by 2**(num_scale - 1). The paper: CIFAR-10
    num_scale 3, CelebA 64x64 num_scale 4, base 32, fc 512, latent 64.
    """

    ENCODER = ("encoder", "fc_enc", "mu", "logvar")
    DECODER = ("fc_dec", "decoder")

    def __init__(self, channels: int, image_size: int, latent_dim: int, base_channels: int = 32, num_scale: int = 3,
                 fc_width: int = 512, blocks_per_scale: int = 1):  # fmt: skip
        super().__init__()
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


# The reference networks, from github daib13/TwoStageVAE (commit 8718623) network/util.py
# and network/two_stage_vae_model.py; Asperti's computed_gamma.py repeats the ResNet.
REF_BN_MOMENTUM = 0.001  # util.py batch_norm: moving averages with decay 0.999, eps 1e-5


def _ref_bn(c: int, dims: int = 2) -> nn.Module:
    return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(c, eps=1e-5, momentum=REF_BN_MOMENTUM)


class RefResBlock(nn.Module):
    """util.py res_block: (BN-ReLU-conv k x k) ``depth`` times, plus a k x k conv shortcut."""

    def __init__(self, c: int, depth: int = 2, k: int = 3):
        super().__init__()
        self.body = nn.Sequential(*[m for _ in range(depth) for m in (_ref_bn(c), nn.ReLU(), nn.Conv2d(c, c, k, 1, k // 2))])
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


class ResNetRef(VAE):
    """The ResNet VAE of the reference code (two_stage_vae_model.py class Resnet), exactly.

    Encoder: 3x3 conv to ``base_channels``; ``num_scale`` scales of ``blocks_per_scale``
    :class:`RefResBlock`, a stride-2 3x3 conv doubling the channels between scales;
    global average pooling; a :class:`RefDenseResBlock` to ``fc_width``; dense heads for
    mu and log sigma (returned as log sigma^2 = 2 log sigma). Decoder: dense to a 2x2 map
    of the widest :func:`ref_decoder_widths`, then per 2x upsampling a stride-2 3x3
    transposed conv and a scale of residual blocks; a 3x3 conv and a sigmoid. The decoder
    does not mirror the encoder: its width is set by the image side. Glorot-uniform
    initialisation as tf.layers. The reference's learned log gamma_x lives in the balance
    strategy here (``learned_gamma``), not in the network.
    """

    ENCODER = ("encoder", "fc_enc", "mu", "logsd")
    DECODER = ("fc_dec", "decoder")

    def __init__(self, channels: int, image_size: int, latent_dim: int, base_channels: int = 32, num_scale: int = 4,
                 fc_width: int = 512, blocks_per_scale: int = 1):  # fmt: skip
        super().__init__()
        widths = ref_decoder_widths(image_size, base_channels)
        check_scales(image_size, num_scale)
        self.latent_dim = latent_dim
        c = base_channels
        enc: list[nn.Module] = [nn.Conv2d(channels, c, 3, 1, 1)]
        for scale in range(num_scale):
            enc += [RefResBlock(c) for _ in range(blocks_per_scale)]
            if scale != num_scale - 1:
                enc.append(nn.Conv2d(c, 2 * c, 3, 2, 1))
                c *= 2
        self.encoder = nn.Sequential(*enc)
        self.fc_enc = RefDenseResBlock(c, fc_width)
        self.mu = nn.Linear(fc_width, latent_dim)
        self.logsd = nn.Linear(fc_width, latent_dim)

        self.start_channels = widths[0]
        self.fc_dec = nn.Linear(latent_dim, 4 * widths[0])
        dec: list[nn.Module] = []
        for c_in, c_out in zip(widths, widths[1:]):
            dec += [nn.ConvTranspose2d(c_in, c_out, 3, 2, 1, output_padding=1),
                    *[RefResBlock(c_out) for _ in range(blocks_per_scale)]]  # fmt: skip
        self.decoder = nn.Sequential(*dec, nn.Conv2d(widths[-1], channels, 3, 1, 1), nn.Sigmoid())
        _glorot(self)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.fc_enc(self.encoder(x).mean((2, 3)))
        return self.mu(h), 2 * self.logsd(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.fc_dec(z).view(-1, self.start_channels, 2, 2))


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

    def __init__(self, channels: int, image_size: int, latent_dim: int):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size {image_size} is not divisible by 4 (two stride-2 layers)")
        self.latent_dim, self.quarter = latent_dim, image_size // 4
        flat = 128 * self.quarter**2
        self.encoder = nn.Sequential(
            SpectralNorm(nn.Conv2d(channels, 64, 4, 2, 1)), nn.LeakyReLU(0.2),
            SpectralNorm(nn.Conv2d(64, 128, 4, 2, 1)), _ref_bn(128), nn.LeakyReLU(0.2), nn.Flatten(),
            SpectralNorm(nn.Linear(flat, 1024)), _ref_bn(1024, 1), nn.LeakyReLU(0.2),
            SpectralNorm(nn.Linear(1024, 2 * latent_dim)),
        )  # fmt: skip
        self.fc_dec = nn.Sequential(
            nn.Linear(latent_dim, 1024), _ref_bn(1024, 1), nn.ReLU(), nn.Linear(1024, flat), _ref_bn(flat, 1), nn.ReLU()
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(128, 64, 4, 2, 1), _ref_bn(64), nn.ReLU(), nn.ConvTranspose2d(64, channels, 4, 2, 1),
            nn.Sigmoid(),
        )  # fmt: skip
        _tf_init(self)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, s = self.encoder(x).chunk(2, dim=1)
        return mu, 2 * torch.log(1e-6 + F.softplus(s))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.fc_dec(z).view(-1, 128, self.quarter, self.quarter))


def _mlp(dim_in: int, width: int, depth: int) -> nn.Sequential:
    layers, d = [], dim_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.ReLU()]
        d = width
    return nn.Sequential(*layers)


class DenseVAE(VAE):
    """Stage-2 VAE on latent codes (Dai & Wipf 2019): ``depth`` dense ReLU layers of
    ``width``; the input is concatenated to the last hidden layer before the output
    heads (encoder and decoder alike). Its latent size equals its data size."""

    ENCODER = ("enc", "mu", "logvar")
    DECODER = ("dec", "out")

    def __init__(self, dim: int, width: int = 1024, depth: int = 3):
        super().__init__()
        self.latent_dim = dim
        self.enc = _mlp(dim, width, depth)
        self.mu = nn.Linear(width + dim, dim)
        self.logvar = nn.Linear(width + dim, dim)
        self.dec = _mlp(dim, width, depth)
        self.out = nn.Linear(width + dim, dim)

    def encode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.cat([self.enc(z), z], dim=1)
        return self.mu(h), self.logvar(h)

    def decode(self, u: torch.Tensor) -> torch.Tensor:
        return self.out(torch.cat([self.dec(u), u], dim=1))


ARCHITECTURES = {"conv": ConvVAE, "resnet": ResNetVAE, "resnet_ref": ResNetRef, "infogan": InfoGAN}


def build_stage1(cfg: dict, channels: int, image_size: int) -> VAE:
    """The stage-1 VAE named by ``cfg["model"]["arch"]`` (default ``conv``). The model block
    holds the settings of every architecture (a sweep only changes ``arch``); each
    takes the keys of its own constructor."""
    m = dict(cfg.get("model", {}))
    arch = m.pop("arch", "conv")
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r} (choose one of {', '.join(ARCHITECTURES)})")
    cls = ARCHITECTURES[arch]
    own = inspect.signature(cls).parameters
    return cls(channels, image_size, cfg["latent_dim"], **{k: v for k, v in m.items() if k in own})


def build_stage2(cfg: dict, latent_dim: int) -> DenseVAE:
    return DenseVAE(latent_dim, cfg["width"], cfg["depth"])


def stage1_from_checkpoint(ckpt: dict) -> VAE:
    """Rebuild a trained stage-1 VAE from the dict saved by the train_vae stage."""
    cfg = ckpt["config"]
    model = build_stage1(cfg, cfg["channels"], cfg["image_size"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def stage2_from_checkpoint(ckpt: dict) -> DenseVAE:
    """Rebuild a trained stage-2 VAE from the dict saved by the train_stage2 stage."""
    cfg = ckpt["config"]
    model = build_stage2(cfg, cfg["latent_dim"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


class Reconstruct(nn.Module):
    """A VAE as a deployable model: x -> decode(mu(x)), the posterior-mean reconstruction."""

    def __init__(self, vae: VAE):
        super().__init__()
        self.vae = vae.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(self.vae.encode(x)[0])


class Generator(nn.Module):
    """The two-stage generator: u ~ N(0, I) of shape (N, latent_dim) -> z = dec2(u) ->
    images dec1(z) in [0, 1], shape (N, C, H, W)."""

    def __init__(self, vae: VAE, stage2: DenseVAE):
        super().__init__()
        self.vae, self.stage2 = vae.eval(), stage2.eval()
        self.latent_dim = stage2.latent_dim

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(self.stage2.decode(u))
