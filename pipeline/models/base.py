"""What every VAE here shares: the reparameterisation z = mu + sigma * eps, the
split of parameters into encoder and decoder, the params it is built from, the
registry of stage-1 architectures, the ResNets' scale check."""

import torch
from torch import nn

from pipeline.config.choices import ARCH_PARAMS


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps, eps ~ N(0, I), sigma = exp(logvar / 2)."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


class VAE(nn.Module):
    """What both VAEs share: the split of their parameters into encoder and decoder
    (named by ``ENCODER`` / ``DECODER``), used by the gradient diagnostics, and the
    dataclass of their settings (``Params``, from :mod:`pipeline.config.choices`)."""

    ENCODER: tuple[str, ...] = ()
    DECODER: tuple[str, ...] = ()
    Params: type  # its settings and their defaults (set by @register for stage 1)

    def settings(self, params: dict):
        """The network's settings: ``params`` by keyword, the others at their defaults; an
        unknown one is a TypeError."""
        return self.Params(**params)

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [p for name in self.ENCODER for p in getattr(self, name).parameters()]

    def decoder_parameters(self) -> list[nn.Parameter]:
        return [p for name in self.DECODER for p in getattr(self, name).parameters()]

    def forward(self, x: torch.Tensor):
        """(decode(z), mu, log sigma^2) with z = mu + sigma * eps drawn from q(z|x)."""
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar)), mu, logvar


ARCHITECTURES: dict[str, type[VAE]] = {}


def register(name: str):
    """Class decorator: make a stage-1 network selectable as ``train.model.arch: <name>``,
    with the params (and defaults) that :data:`pipeline.config.choices.ARCH_PARAMS` gives it."""

    def add(cls):
        cls.Params = ARCH_PARAMS[name]
        ARCHITECTURES[name] = cls
        return cls

    return add


def check_scales(image_size: int, num_scale: int) -> None:
    """The ResNets halve the side num_scale - 1 times: it must divide by 2**(num_scale - 1)."""
    if num_scale < 1 or image_size % 2 ** (num_scale - 1):
        raise ValueError(f"image_size {image_size} is not divisible by 2**(num_scale - 1) = {2 ** (num_scale - 1)}")
