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

from dataclasses import fields

import torch
from torch import nn

from pipeline.config import sizing
from pipeline.models.base import ARCHITECTURES, VAE, check_scales, reparameterize
from pipeline.models.conv import ConvVAE
from pipeline.models.dense import DenseVAE
from pipeline.models.generator import Generator
from pipeline.models.infogan import InfoGAN, SpectralNorm
from pipeline.models.resnet import DenseResBlock, ResBlock, ResNetVAE
from pipeline.models.resnet_ref import RefDenseResBlock, RefResBlock, ResNetRef

__all__ = [
    "VAE",
    "ConvVAE",
    "ResNetVAE",
    "ResNetRef",
    "InfoGAN",
    "DenseVAE",
    "reparameterize",
    "check_scales",
    "ARCHITECTURES",
    "build_stage1",
    "build_stage2",
    "stage1_from_checkpoint",
    "stage2_from_checkpoint",
    "Reconstruct",
    "Generator",
]
# The layers too: MLflow models pickled before the split name them as pipeline.models.<class>
__all__ += ["SpectralNorm", "ResBlock", "DenseResBlock", "RefResBlock", "RefDenseResBlock"]


def build_stage1(cfg: dict, channels: int, image_size: int) -> VAE:
    """The stage-1 VAE named by ``cfg["model"]["arch"]`` (default ``conv``). The model block
    holds the settings of every architecture (a sweep only changes ``arch``); each
    takes the keys of its own params (:data:`pipeline.config.choices.ARCH_PARAMS`).
    ``cfg["latent_dim"]`` may be ``auto``: the size rule of :mod:`pipeline.config.sizing`."""
    m = dict(cfg.get("model", {}))
    arch = m.pop("arch", "conv")
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r} (choose one of {', '.join(ARCHITECTURES)})")
    cls = ARCHITECTURES[arch]
    own = {f.name for f in fields(cls.Params)}
    latent_dim, _ = sizing.latent_dim(cfg["latent_dim"], channels, image_size)
    return cls(channels, image_size, latent_dim, **{k: v for k, v in m.items() if k in own})


def build_stage2(cfg: dict, latent_dim: int) -> DenseVAE:
    return DenseVAE(latent_dim, width=cfg["width"], depth=cfg["depth"])


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
