"""Evaluation protocols (``evaluate.protocol``), registered by name: which image sets are
scored, against which real test images, and what is done to them before the feature network.
``clean`` (default) scores the images as the models make them; ``dai_wipf`` and ``asperti``
do what their reference's code does, step by step, each step citing its file and line
(their modules; the steps side by side: docs/evaluation.md#protocols-evaluateprotocol).
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
