"""Feature spaces for FID, registered by name (the ``reference.features`` param).

- ``domain``: the penultimate layer of the domain classifier (``pipeline.evaluation.classifier``),
  trained by the pipeline itself: works offline, comparable within this pipeline.
- ``inception``: Inception-v3 pool3 (2048-d) features with the TF 2015-12-05 weights,
  through torch-fidelity (images bilinearly resized to 299, grey repeated to RGB):
  the standard FID, comparable with papers.

Every extractor maps uint8 images (N, C, H, W) to float64 features (N, d). The
Frechet distance itself is torch-fidelity's (``metric_fid``):

    FID = |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)).
"""

import os
import socket
import time
from pathlib import Path

import torch

from pipeline import PipelineError
from pipeline.progress import progress

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"


class FeatureSpace:
    name: str
    batch_size: int = 500
    same_as_reference: bool = True  # maps pixels as the reference stage's real features were made

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def throughput(self, images: torch.Tensor) -> float:
        """Images per second on a few images (after one warm-up batch): for the cost estimate."""
        self.forward(images[:2].to(self.device))
        t0 = time.perf_counter()
        self.forward(images.to(self.device)).cpu()
        return len(images) / max(time.perf_counter() - t0, 1e-9)

    @torch.no_grad()
    def extract(self, images: torch.Tensor, desc: str = "features") -> torch.Tensor:
        """Features of uint8 images (N, C, H, W), batch by batch, as float64 (N, d) on the CPU."""
        out = []
        with progress(total=len(images), desc=f"{desc} [{self.name}]", unit="img", leave=False) as bar:
            for i in range(0, len(images), self.batch_size):
                out.append(self.forward(images[i : i + self.batch_size].to(self.device)).double().cpu())
                bar.update(len(out[-1]))
        return torch.cat(out)


class DomainFeatures(FeatureSpace):
    name = "domain"

    def __init__(self, classifier_path: str | Path, device: torch.device):
        from pipeline.evaluation.classifier import DomainClassifier

        ckpt = torch.load(classifier_path, map_location="cpu", weights_only=True)
        self.model = DomainClassifier(**ckpt["config"]).to(device).eval()
        self.model.load_state_dict(ckpt["state_dict"])
        self.model.to(memory_format=torch.channels_last)  # 1.7x the images/s of NCHW on a 2-core CPU (docs/speed.md)
        self.device = device

    def forward(self, x):
        return self.model.features((x.float() / 255).contiguous(memory_format=torch.channels_last))


def asperti_input(module, args: tuple) -> tuple:
    """A forward pre-hook on Inception's first convolution: torch-fidelity hands it
    x = (q - 128) / 128 of the resized pixel values q (feature_extractor_inceptionv3.py, its
    ``forward``); Asperti's fid.py:54 feeds ``images * 2 - 1`` of images in [0, 1], which the
    graph resizes and passes on as they are: (q - 127.5) / 127.5. Bilinear resizing commutes
    with the affine map, so re-mapping after it gives the reference's values."""
    (x,) = args
    return ((x * 128 + 128) / 127.5 - 1,)


INCEPTION_INPUTS = {"torch-fidelity": None, "asperti": asperti_input}  # name -> pre-hook on Conv2d_1a_3x3


class InceptionFeatures(FeatureSpace):
    name = "inception"
    batch_size = 64

    def __init__(self, weights_path: str | None, device: torch.device, inception_input: str = "torch-fidelity"):
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.model = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048"], feature_extractor_weights_path=weights_path
        )
        self.model.to(device)
        self.device = device
        self.same_as_reference = inception_input == "torch-fidelity"
        if hook := INCEPTION_INPUTS[inception_input]:
            self.model.Conv2d_1a_3x3.register_forward_pre_hook(hook)

    def forward(self, x):
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        return self.model(x)[0]


FEATURE_SPACES = {"domain": DomainFeatures, "inception": InceptionFeatures}


def inception_cache_path() -> Path:
    """Where torch-fidelity looks for (and downloads) the weights: $TORCH_HOME/hub/checkpoints/."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def _network_reachable(host: str = "github.com", port: int = 443, timeout: float = 3.0) -> bool:
    if os.environ.get("BVAE_OFFLINE", "") not in ("", "0"):
        return False
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def resolve_inception_weights(path: str | None, labelled: bool = True) -> str | None:
    """The local weights file to use; None means torch-fidelity may download it.

    Checked before any long work: without the file and without a network, stop with
    one message that says where to put it (and, for ``labelled`` data, that the domain
    features need none).
    """
    if path:
        if not Path(path).is_file():
            raise PipelineError(f"reference.inception_weights: file not found: {path}")
        return str(path)
    cached = inception_cache_path()
    if cached.is_file():
        return str(cached)
    if not _network_reachable():
        raise PipelineError(
            f"Inception FID needs the Inception-v3 weights file {INCEPTION_FILE}, which is not on this machine, "
            f"and there is no network to download it. Download it from {INCEPTION_URL} on a connected machine and "
            f"put it at {cached} (or set reference.inception_weights to its path)"
            + ("; or use reference.features: domain." if labelled else ".")
        )
    return None


def build_feature_space(
    name: str, *, classifier_path, inception_weights: str | None, device, inception_input: str = "torch-fidelity"
) -> FeatureSpace:
    """The feature space ``name``; ``inception_input``: how Inception maps pixel values
    (:data:`INCEPTION_INPUTS`; the domain classifier has one mapping, x / 255)."""
    if name == "domain":
        return DomainFeatures(classifier_path, device)
    if name == "inception":
        return InceptionFeatures(resolve_inception_weights(inception_weights), device, inception_input)
    raise PipelineError(
        f"reference.features: unknown feature space '{name}' (choose one of {', '.join(FEATURE_SPACES)})"
    )


def statistics(features: torch.Tensor) -> dict:
    """Mean and covariance of features (torch-fidelity's ``fid_features_to_statistics``)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics

    return fid_features_to_statistics(features)


def frechet_distance(stats_1: dict, stats_2: dict) -> float:
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    return float(fid_statistics_to_metric(stats_1, stats_2, verbose=False)[KEY_METRIC_FID])


def fidelity_metrics(generated: torch.Tensor, real: torch.Tensor, real_stats: dict, seed: int = 0) -> dict:
    """FID, KID and precision/recall of generated vs real features, all by torch-fidelity.

    - ``fid``: Frechet distance of the two Gaussians fitted to the features.
    - ``kid_mean`` / ``kid_std``: kernel inception distance, the unbiased MMD^2 with the
      cubic polynomial kernel over 100 random subsets of ``kid_subset_size`` items of each
      set (:func:`kid_subset_size`), in the units torch-fidelity reports.
    - ``precision`` / ``recall``: share of generated items inside the real manifold
      (k = 3 nearest-neighbour balls) and of real items inside the generated one
      (Kynkaanniemi et al. 2019).
    """
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric
    from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric

    subset = kid_subset_size(len(generated), len(real))
    kid = kid_features_to_metric(generated, real, kid_subset_size=subset, rng_seed=seed, verbose=False)
    prc = prc_features_to_metric(generated.float(), real.float(), verbose=False)
    return {
        "fid": frechet_distance(statistics(generated), real_stats),
        "kid_mean": kid[KEY_METRIC_KID_MEAN],
        "kid_std": kid[KEY_METRIC_KID_STD],
        "kid_subset_size": subset,
        "precision": prc[KEY_METRIC_PRECISION],
        "recall": prc[KEY_METRIC_RECALL],
    }


def kid_subset_size(n_generated: int, n_real: int) -> int:
    """KID's subset size: 1000 (torch-fidelity's default) or half the smaller set, whichever is
    less, so that subsets differ and kid_std measures their spread (a subset as large as a
    set is that set every time, and the std is 0)."""
    return max(2, min(1000, min(n_generated, n_real) // 2))
