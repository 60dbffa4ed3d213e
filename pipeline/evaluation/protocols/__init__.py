"""Evaluation protocols (``evaluate.protocol``), registered by name: which image sets are
scored, against which real test images, and what is done to them before the feature network.

FID moves with every step of this, so a number compares with a published one only under
the steps of the code that made it. Each reference protocol does what its code does, step
by step, each step citing the file and line:

- ``clean`` (default, :mod:`.clean`): the images as the models make them; REC from the
  posterior mean; ``evaluate.samplers``, ``num_samples`` and ``rescale`` as set.
- ``dai_wipf`` (:mod:`.dai_wipf`): Dai & Wipf's TwoStageVAE: REC from a posterior draw, every
  image min-max normalised, GEN-2 with the gamma_z noise, 10,000 vs 10,000.
- ``asperti`` (:mod:`.asperti`): Asperti & Trentin's BalancingVAE: REC from a posterior draw
  and adjusted to the test images' spread, GEN-1 and GEN-2 latents rescaled by one scalar
  when the second stage loses variance, no min-max, 9,984 vs 9,984.

The reference protocols score the reference's three sets, REC, GEN-1 and GEN-2 (metric
names ``..._rec``, ``_gen1``, ``_gen2``, each as that reference defines it); ``samplers``,
``num_samples`` and ``rescale`` apply to ``clean``. CIFAR-10's JPEG round trip is a property
of the data in both references (``prepare.jpeg_quality: 75``, the cifar10 preset).
"""

from pipeline.evaluation.protocols.asperti import Asperti
from pipeline.evaluation.protocols.base import Context, Protocol
from pipeline.evaluation.protocols.clean import Clean
from pipeline.evaluation.protocols.dai_wipf import DaiWipf

PROTOCOLS = {p.name: p for p in (Clean, DaiWipf, Asperti)}

__all__ = ["PROTOCOLS", "Context", "Protocol", "build", "space_name"]


def build(name: str, ctx: Context) -> Protocol:
    """The protocol ``name`` for the models and data of ``ctx``."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r} (choose one of {', '.join(PROTOCOLS)})")
    return PROTOCOLS[name](ctx)


def space_name(features: str, protocol: str) -> str:
    """The feature-space token of metric names: ``inception`` or ``inception-dai_wipf``."""
    return features if protocol == "clean" else f"{features}-{protocol}"
