"""The stage-2 VAE: dense, on stage-1 latent codes, with a linear decoder output."""

import torch
from torch import nn

from pipeline.config.choices import DenseParams
from pipeline.models.base import VAE


def _mlp(dim_in: int, width: int, depth: int) -> nn.Sequential:
    layers, d = [], dim_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.ReLU()]
        d = width
    return nn.Sequential(*layers)


class DenseVAE(VAE):
    """Stage-2 VAE on latent codes (Dai & Wipf 2019): ``depth`` dense ReLU layers of
    ``width``; the input is concatenated to the last hidden layer before the output
    heads (encoder and decoder alike). Its latent size equals its data size. Settings:
    :class:`pipeline.config.choices.DenseParams`."""

    ENCODER = ("enc", "mu", "logvar")
    DECODER = ("dec", "out")
    Params = DenseParams

    def __init__(self, dim: int, **params):
        super().__init__()
        width, depth = (p := self.settings(params)).width, p.depth
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
