"""The sizes of a stage's params (:mod:`pipeline.hardware.sizes`), gathered for the stage at its
start and for `bvae check` before `dvc repro`."""

import torch

from pipeline.hardware.sizes import Shape, batch_within, check, evaluation, training

INCEPTION_FEATURES = 2048  # Inception-v3's pool3


def check_params(
    params: dict, shape: Shape, device: torch.device, sections: tuple[str, ...], labelled: bool, latent: int = 0
) -> list[str]:
    """:func:`check` the sizes of the params ``sections`` (``train``, ``stage2``, ``evaluate``,
    ``reference``) for data of ``shape`` (``labelled``: with at least two classes) and a stage-1
    model of ``latent`` units (0: as ``train.latent_dim`` gives it), batches against the sets
    they are drawn from first: returns the lines saying a batch is the whole set (printed by the
    caller)."""
    from pipeline.config import sizing
    from pipeline.config.choices import feature_space as resolve_space
    from pipeline.models import build_stage1, build_stage2

    latent = latent or sizing.latent_dim(params["train"]["latent_dim"], shape.channels, shape.side)[0]
    found, said = [], []
    if "reference" in sections and labelled and resolve_space(params["reference"]["features"], True) == "domain":
        cls = params["reference"]["classifier"]
        said.append(
            batch_within("reference.classifier.batch_size", cls["batch_size"], shape.num_train, "training images")
        )
    if "train" in sections:
        cfg = params["train"] | {"latent_dim": latent}
        said.append(batch_within("train.batch_size", cfg["batch_size"], shape.num_train, "training images"))
        build = lambda c: build_stage1(c, shape.channels, shape.side)  # noqa: E731
        found += training("train", cfg, build, shape.values, "latent_dim")
    if "stage2" in sections:
        cfg = params["stage2"]
        codes = "latent codes (one a training image)"
        said.append(batch_within("stage2.batch_size", cfg["batch_size"], shape.num_train, codes))
        found += training("stage2", cfg, lambda c: build_stage2(c, latent), latent, "width")
    if "evaluate" in sections:
        space = resolve_space(params["reference"]["features"], labelled)
        features = params["reference"]["classifier"]["feature_dim"] if space == "domain" else INCEPTION_FEATURES
        found += evaluation(params["evaluate"], shape, latent, features)
    check(found, device)
    return [line for line in said if line]
