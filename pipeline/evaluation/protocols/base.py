"""What every evaluation protocol is given and what it answers (see the package docstring)."""

from dataclasses import dataclass

import torch


@dataclass
class Context:
    """The trained models and the data of one evaluation: stage 1 (``vae``), stage 2 and its
    final gamma (``gamma_z``), the Gaussian mixture on the codes, the stage-2 training codes'
    expected std per dimension (for ``gen2_rescaled``), the uint8 test images (N, C, H, W),
    the params' samplers, sample count (None: as many as test images), rescale flag, batch
    size and seed."""

    vae: torch.nn.Module
    stage2: torch.nn.Module
    gamma_z: float
    gmm: object
    expected_std: torch.Tensor
    test: torch.Tensor
    samplers: list
    num_samples: int | None
    rescale: bool
    batch_size: int
    seed: int


class Protocol:
    """One protocol, built for one evaluation. Subclasses set ``name`` and ``sets`` (the image
    sets scored: "rec" and samplers), ``rec_rows`` (the test images reconstructed, as indices),
    ``real_rows`` (the test images the real statistics come from) and implement ``images``."""

    name = ""
    feature_batch = 1  # the reference's feature code scores whole batches of this many images
    inception_input = "torch-fidelity"  # how Inception's first layer sees pixel values (features.INCEPTION_INPUTS)

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.sets: list[str] = []
        self.rec_rows = torch.arange(len(ctx.test))
        self.real_rows = torch.arange(len(ctx.test))
        self.count = len(ctx.test)  # images per generated set

    def images(self, name: str) -> torch.Tensor:
        """The uint8 images of set ``name`` as this protocol scores them."""
        raise NotImplementedError

    def kept(self, n: int) -> int:
        """How many of n images (the first n) the reference's feature code scores: whole batches."""
        return n // self.feature_batch * self.feature_batch

    def notes(self) -> list[str]:
        """Lines for the stage's log: how many images it scores, and what it decided on these models."""
        n_real, n = self.kept(len(self.real_rows)), self.kept(self.count)
        return [f"{self.name}: {n_real:,} real test images against {n:,} of each set"]

    def metrics(self) -> dict:
        """Numbers this protocol computed on the way (logged with the stage's metrics)."""
        return {}


def subset(n: int, size: int, seed: int) -> torch.Tensor:
    """A seeded random ``size`` of ``range(n)`` (all n, shuffled, when n <= size): the
    references' ``np.random.shuffle(x); x = x[0:10000]``."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size]
