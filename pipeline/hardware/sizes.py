"""Every setting that scales memory, checked against the data and the machine before the work.

Each :class:`Size` names a setting, its value and the bytes the work holds at once for a
value v (``need(v)``, growing with v). :func:`check` stops at the first that does not fit
in MARGIN of the memory this process may use (:func:`pipeline.hardware.memory.available`),
in one line naming the setting and the largest value that fits; a batch larger than the set
it is drawn from is said in one line (each step is then one full batch). The stages check
their own sections at their start, with the data they loaded (:mod:`stages.sizes` gathers them from the params); `bvae check` checks
them all before `dvc repro`, with the data's shape as prepare will make it
(:func:`pipeline.data.expected_shape`).

The estimates count what is held at once (lower bounds: a layer's activations in between
are not counted). With N images per set, D values an image, L latent units, F features:

- training (train.batch_size, train.latent_dim, stage2.batch_size, stage2.width):
  16 bytes a parameter (float32 weight, gradient and Adam's two moments) and three float32
  copies of a batch (input, output, output gradient): 16 P + 12 B D;
- evaluate.num_samples: precision/recall (torch-fidelity's ``calculate_precision_recall_full``,
  metric_prc.py:57-60) holds the N x N, the N x N_real and the N_real x N_real distance
  matrices in float32; beside them a set's uint8 images, latents in float32 and features in
  float64 and float32: 4 N^2 + 4 N N_real + 4 N_real^2 + N (D + 4 L + 12 F);
- evaluate.batch_size: a batch decoded in float32 (three copies) and its codes: B (12 D + 4 L);
- evaluate.nll_samples K: five float32 values per test image and draw, and a batch of
  max(B, K) decodes (:func:`pipeline.evaluation.likelihood.draw`): 20 N_test K + 12 max(B, K) D;
- evaluate.nll_prior_samples S: the stage-2 prior's S inner draws for each of those
  decodes' codes: 12 max(B, K) S L.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from pipeline import PipelineError
from pipeline.hardware.memory import ADAM_BYTES, MARGIN, available, gb


@dataclass
class Shape:
    """The data a run works on: training and test images, each channels x side x side."""

    num_train: int
    num_test: int
    channels: int
    side: int

    @property
    def values(self) -> int:  # D
        return self.channels * self.side * self.side


@dataclass
class Size:
    """A setting that scales memory: ``need(v)`` bytes for value v; ``what`` says of what."""

    setting: str
    value: int
    need: Callable[[int], float]
    what: str


def largest(need: Callable[[int], float], budget: float, hi: int) -> int:
    """The largest v in [1, hi] whose ``need(v)`` fits in ``budget`` (need grows with v); 0 if none."""
    lo = 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if need(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def batch_within(setting: str, value: int, count: int, what: str) -> str | None:
    """The line saying that a batch of ``value`` is larger than the ``count`` items it is drawn
    from, so that every step is one full batch (what the training does then), else None."""
    if value <= count:
        return None
    return (
        f"{setting}: {value:,} is more than the {count:,} {what} each epoch is drawn from: every step is one "
        f"full batch of {count:,}, one step an epoch (set it to at most {count:,}, or lower, for more steps)"
    )


def check(sizes: list[Size], device: torch.device) -> None:
    """Raise one line at the first of ``sizes`` whose need exceeds MARGIN of the memory available."""
    have = available(device)
    if have is None:
        return
    budget = MARGIN * have
    for s in sizes:
        if (need := s.need(s.value)) > budget:
            fits = largest(s.need, budget, s.value)
            best = f"the largest value that fits is {fits:,}" if fits else "no value fits: lower the others"
            raise PipelineError(
                f"{s.setting}: {s.value:,} needs about {gb(need)} for {s.what}, more than {MARGIN:.0%} of the "
                f"{gb(have)} this process may use on {device}; {best}"
            )


def parameters(build: Callable[[], torch.nn.Module]) -> int:
    """The parameter count of the model ``build()`` makes, built on the meta device (nothing allocated)."""
    with torch.device("meta"):
        return sum(p.numel() for p in build().parameters())


def training(section: str, cfg: dict, build: Callable[[dict], torch.nn.Module], item_values: int, sized: str):
    """The sizes of a training stage: ``<section>.batch_size`` and ``<section>.<sized>`` (the
    model's size setting), ``build(cfg)`` making its model; batches of ``item_values`` values."""

    def need(params: int, batch: int) -> float:
        return ADAM_BYTES * params + 3 * 4 * batch * item_values

    p = parameters(lambda: build(cfg))
    return [
        Size(
            f"{section}.{sized}",
            cfg[sized],
            lambda v: need(parameters(lambda: build(cfg | {sized: v})), cfg["batch_size"]),
            f"the model ({p:,} parameters, with gradients and Adam state) and a batch",
        ),
        Size(f"{section}.batch_size", cfg["batch_size"], lambda b: need(p, b), "a batch beside the model"),
    ]


def evaluation(cfg: dict, shape: Shape, latent: int, features: int) -> list[Size]:
    """The sizes of the evaluate stage (``cfg``: ``params["evaluate"]``) for data of ``shape``,
    ``latent`` stage-1 units and ``features`` feature dimensions."""
    d, n_real, b, k = shape.values, shape.num_test, cfg["batch_size"], cfg["nll_samples"]
    n_nll = min(cfg.get("nll_images") or n_real, n_real)
    n = cfg["num_samples"] or shape.num_test
    sizes = [
        Size(
            "evaluate.num_samples",
            n,
            lambda v: 4 * v * v + 4 * v * n_real + 4 * n_real**2 + v * (d + 4 * latent + 12 * features),
            f"one sampler's set (precision/recall's distance matrices against {n_real:,} test images)",
        ),
        Size("evaluate.batch_size", b, lambda v: v * (12 * d + 4 * latent), "a batch of decoded images"),
    ]
    if k:
        sizes += [
            Size(
                "evaluate.nll_samples",
                k,
                lambda v: 20 * n_nll * v + 12 * max(b, v) * d,
                f"the likelihood's draws for {n_nll:,} test images",
            ),
            Size(
                "evaluate.nll_prior_samples",
                cfg["nll_prior_samples"],
                lambda v: 12 * max(b, k) * v * latent,
                "the two-stage prior's inner draws for a batch",
            ),
        ]
    return sizes
