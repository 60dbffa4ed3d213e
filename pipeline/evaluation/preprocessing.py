"""Evaluation protocols (``evaluate.protocol``): what is done to images before they are scored.

FID moves with every step of preprocessing, so a number is comparable with a published one
only under the same steps. Both protocols score the same images against the same real test
images; only the generated and reconstructed sets change.

- ``clean`` (default): the images as the models produce them (uint8), scored by
  torch-fidelity. Metric names carry the feature space alone: ``fid_inception_gen2``.
- ``paper``: the preprocessing behind the published numbers, from the reference code.
  Metric names carry ``-paper`` on the feature space: ``fid_inception-paper_gen2``.

  * Every sampler's images are min-max normalised one by one, x <- (x - min x) / (max x - min x),
    as Dai & Wipf score REC, GEN-1 and GEN-2 (TwoStageVAE fid_score.py lines 183-187,
    ``preprocess_fake_images(norm=True)``, called with norm=True from demo.py).
  * REC is adjusted as Asperti & Trentin's code does before scoring (BalancingVAE
    computed_gamma.py lines 634-647): the reconstructions are rescaled around their
    per-pixel mean so that their mean per-pixel std across images equals the real test
    images', then clipped to [0, 1].
  * CIFAR-10's JPEG round trip is a property of the data in both references (their train and
    test sets are JPEG-encoded at preparation): set ``prepare.jpeg_quality: 75`` (the
    cifar10 preset does), so the model trains on, and is scored against, the same images.

  Unlike the references, images reach the feature network as uint8 (torch-fidelity's
  input), so the adjusted floats are rounded to 1/255.
"""

import torch

from pipeline.images import to_uint8


def space_name(features: str, protocol: str) -> str:
    """The feature-space token of metric names: ``inception`` or ``inception-paper``."""
    return features if protocol == "clean" else f"{features}-{protocol}"


def normalise_each(images: torch.Tensor) -> torch.Tensor:
    """Dai & Wipf: every image min-max normalised to [0, 1] on its own (a constant image is left as it is)."""
    x = images.double()
    lo = x.flatten(1).min(1).values.view(-1, 1, 1, 1)
    hi = x.flatten(1).max(1).values.view(-1, 1, 1, 1)
    span = hi - lo
    return to_uint8(torch.where(span > 0, (x - lo) / span.clamp_min(1), x / 255))


def adjust_reconstructions(rec: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Asperti & Trentin: rescale reconstructions around their per-pixel mean by
    mean_pixels(std_images(real)) / mean_pixels(std_images(rec)), clip to [0, 1]."""
    x, r = real.float() / 255, rec.float() / 255
    scale = x.std(0, unbiased=False).mean() / r.std(0, unbiased=False).mean()  # np.std: the population std
    mean = r.mean(0)
    return to_uint8(((r - mean) * scale + mean).clamp(0, 1))


def apply(protocol: str, name: str, images: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """The images of set ``name`` (``rec`` or a sampler) as ``protocol`` scores them."""
    if protocol == "clean":
        return images
    if protocol != "paper":
        raise ValueError(f"unknown protocol {protocol!r}")
    return adjust_reconstructions(images, real) if name == "rec" else normalise_each(images)
