"""What every VAE here shares: the reparameterisation z = mu + sigma * eps, the
split of parameters into encoder and decoder, the ResNets' scale check."""

import torch
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
