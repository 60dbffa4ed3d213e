"""Scoring a two-stage model, step by step (what the evaluate stage runs, in order):

1. :func:`feature_space` (before any work): the feature space ``reference.features`` gives
   this data, its Inception weights present or downloadable, and the reference stage's
   real-image features made in it;
2. :func:`protocol`: the image sets ``evaluate.protocol`` scores, refused when too few test
   images are left for its reference's whole batches;
3. :func:`score_set`, for each set: FID, KID and precision/recall of its images against the
   protocol's real test images (:func:`pipeline.evaluation.features.fidelity_metrics`), and
   each sampler's FID against the validation images (``selection_fid``, :func:`selection_side`);
4. :func:`choose_generator`: the sampler with the lowest ``selection_fid`` becomes the
   registered generator (:func:`generator`), chosen without the test images that report it;
5. :func:`score_likelihood`: the test images' ELBO and IWAE bounds
   (:mod:`pipeline.evaluation.likelihood`);
6. :func:`headline`: the metrics that go on the pipeline's parent run.

Metric names carry the feature space and the protocol: ``fid_domain_gen2``,
``kid_mean_inception-dai_wipf_rec``, ``bpd_iwae_stage1_gamma_test``.
"""

import torch

from pipeline import PipelineError
from pipeline.config.choices import feature_space as resolve_space
from pipeline.evaluation import likelihood, protocols
from pipeline.evaluation.features import fidelity_metrics, frechet_distance, resolve_inception_weights, statistics
from pipeline.models import Generator

HEADLINE_NLL = (
    "bpd_iwae_stage1_gamma_trained",
    "bpd_iwae_stage1_gamma_test",
    "bpd_iwae_twostage_gamma_test",
    "bpd_iwae_stage1_gamma_iwae",
    "bpd_iwae_twostage_gamma_iwae",
    "gamma_test",
    "gamma_iwae_stage1",
)  # with the FIDs; gamma_test^2 (the test MSE) and D (the param data_dim) turn beta_eff into a variance
HEADLINE_STAGE1 = ("final_gamma", "final_beta_eff", "final_active_units", "final_kl_grad_share")  # train_vae's


def feature_space(ref: dict, meta: dict) -> str:
    """The feature space for this data (``ref``: params' ``reference``, ``meta``: the prepared
    data's meta.json), checked before any work: Inception's weights must be at hand or
    downloadable."""
    labelled = meta.get("num_classes", 0) >= 2
    space = resolve_space(ref["features"], labelled)
    if space == "inception":
        resolve_inception_weights(ref.get("inception_weights"), labelled)
    return space


def protocol(cfg: dict, ctx: protocols.Context) -> protocols.Protocol:
    """The protocol ``evaluate.protocol`` on the models and test images of ``ctx`` (asperti
    encodes the test set for its rescale); refused when its reference's whole feature batches
    leave fewer than 2 test images."""
    proto = protocols.build(cfg["protocol"], ctx)
    if proto.kept(len(proto.real_rows)) < 2:
        raise PipelineError(
            f"evaluate.protocol: {proto.name} scores whole batches of {proto.feature_batch} images, as its "
            f"reference's feature code does: {len(ctx.test)} test images leave {proto.kept(len(proto.real_rows))}. "
            "Use more test images (prepare.limit_test) or evaluate.protocol: clean"
        )
    return proto


def real_side(
    proto: protocols.Protocol, features: torch.Tensor, space, test: torch.Tensor
) -> tuple[torch.Tensor, dict]:
    """The real test images' features this protocol scores against, and their FID statistics:
    rows of the reference stage's ``features``, or extracted again in ``space`` from the
    ``test`` images where the protocol maps Inception's input its own way."""
    rows = proto.real_rows[: proto.kept(len(proto.real_rows))]
    if not space.same_as_reference:
        real = space.extract(test[rows], "real")
    else:
        real = features[rows]
    return real, statistics(real)


def selection_side(reference: dict, space, images) -> dict:
    """FID statistics of the images the registered generator is chosen on: the reference
    stage's validation images (``prepare.val_fraction``: no stage trained on them; the training
    images when there are none), never the test images that report the chosen sampler's FID;
    extracted again where the protocol maps Inception's input its own way (``images(split)``:
    a callable giving that split's images)."""
    if "choice_features" not in reference:
        raise PipelineError("reference/real_stats.pt predates the validation split: dvc repro -f reference")
    if space.same_as_reference:
        return statistics(reference["choice_features"])
    split = reference["choice_split"]
    return statistics(space.extract(images(split)[reference["choice_rows"]], f"{split} images"))


def score_set(
    proto, name: str, space, real: tuple[torch.Tensor, dict], seed: int, selection: dict
) -> tuple[torch.Tensor, dict]:
    """The images of set ``name`` (REC or a sampler) and their FID, KID and precision/recall
    in ``space`` against ``real`` (:func:`real_side`), as ``fid``, ``kid_mean``, ...; for a
    sampler also its FID against the validation images of ``selection`` (:func:`selection_side`),
    as ``selection_fid``."""
    images = proto.images(name)
    features = space.extract(images[: proto.kept(len(images))], name)
    values = fidelity_metrics(features, real[0], real[1], seed)
    if name != "rec":
        values["selection_fid"] = frechet_distance(statistics(features), selection)
    return images, values


def choose_generator(metrics: dict, space_name: str, sets: list[str], split: str) -> tuple[str, str]:
    """The sampler of ``sets`` with the lowest FID against the ``split`` images (``val`` or
    ``train``; ``metrics``' ``selection_fid_<space>_<sampler>``), and a line saying how it was
    chosen; gen2 when no sampler was scored."""
    fids = {w: metrics[f"selection_fid_{space_name}_{w}"] for w in sets if w != "rec"}
    if not fids:
        return "gen2", "gen2: no sampler was scored (evaluate.samplers is empty)"
    best = min(fids, key=fids.get)
    shown = ", ".join(f"{w} {v:.4g}" for w, v in fids.items())
    on = "validation images held out of training" if split == "val" else "training images (prepare.val_fraction: 0)"
    return best, f"{best}: the lowest FID against {on}, not the test images ({shown})"


def generator(proto, name: str) -> Generator:
    """The one-call generator of sampler ``name`` (:mod:`pipeline.models.generator`) on the
    CPU, from the protocol's models: the sampler's latent law, without the protocol's image
    preprocessing."""
    c = proto.ctx
    shift, scale = proto.rescale_constants() if name == "gen2_rescaled" else (None, None)
    return Generator(c.vae.cpu(), name, c.stage2.cpu(), c.gamma_z, c.gmm, shift, scale)


def likelihood_rows(num_test: int, nll_images: int | None) -> torch.Tensor:
    """The test images the likelihood scores: all, or ``evaluate.nll_images`` of them, a random
    subset drawn with seed 0 whatever ``evaluate.seed`` is, so that every run of the same data
    scores the same images (their differences are paired), in test-set order."""
    if nll_images is None or nll_images >= num_test:
        return torch.arange(num_test)
    return torch.randperm(num_test, generator=torch.Generator().manual_seed(0))[:nll_images].sort().values


def score_likelihood(vae, stage2, gamma_z: float, gamma_trained: float, test: torch.Tensor, cfg: dict) -> dict:
    """The test images' negative ELBO and IWAE bound with ``evaluate.nll_samples`` importance
    samples, in nats and bits/dim, for stage 1 and the two-stage model, at the trained decoder
    std, at gamma_test (the ELBO's optimum) and at each model's IWAE-optimal gamma, on the test
    images of :func:`likelihood_rows` (``nll_images``: how many), with each IWAE mean's standard
    error over them."""
    seed = cfg["seed"]
    rows = likelihood_rows(len(test), cfg.get("nll_images"))
    y = likelihood.dequantise(test[rows], torch.Generator().manual_seed(seed))
    draws = likelihood.draw(
        vae,
        y,
        cfg["nll_samples"],
        seed,
        stage2=stage2,
        gamma_z=gamma_z,
        prior_samples=cfg["nll_prior_samples"],
        batch_size=cfg["batch_size"],
    )
    return likelihood.likelihood_metrics(draws, gamma_trained, two_stage=True)


def likelihood_lines(nll: dict) -> list[str]:
    """The likelihood's headline numbers as lines for the stage's log."""

    def bpd(model: str, g: str) -> str:
        return f"{nll[f'bpd_iwae_{model}_gamma_{g}']:.3f} +- {nll[f'bpd_iwae_{model}_gamma_{g}_sem']:.3f}"

    lines = [
        f"  gamma_{g} {nll[f'gamma_{g}']:.4g}: stage 1 {bpd('stage1', g)}, two-stage {bpd('twostage', g)}"
        for g in ("trained", "test")
        if f"gamma_{g}" in nll
    ]
    return lines + [
        f"  at each model's IWAE-optimal gamma (cross-fitted): stage 1 {bpd('stage1', 'iwae')} "
        f"(gamma {nll['gamma_iwae_stage1']:.4g}), two-stage {bpd('twostage', 'iwae')} "
        f"(gamma {nll['gamma_iwae_twostage']:.4g})",
        "  (+- the standard error of the mean over the scored test images)",
    ]


def is_headline(key: str) -> bool:
    """The metrics of metrics/evaluate.json (what `dvc metrics show` shows): FIDs and likelihood."""
    return key.startswith("fid_") or key in HEADLINE_NLL


def headline(metrics: dict, stage1: dict, space: str, floor: float | None) -> dict:
    """The parent run's metrics: evaluate's headline ones, train_vae's final ``HEADLINE_STAGE1``
    (``stage1``: its metrics file) as ``train_vae.<key>``, and the floor of every FID
    (``fid_<space>_train_vs_test``, the reference stage's real training against test images)."""
    out = {k: v for k, v in metrics.items() if is_headline(k)}
    out |= {f"train_vae.{key}": stage1[key] for key in HEADLINE_STAGE1 if key in stage1}
    if floor is not None:
        out[f"fid_{space}_train_vs_test"] = floor
    return out


def over_floor(fid: float, floor: float | None) -> str:
    """`` (3.1x the floor)``: an FID on the scale of its feature space's train-vs-test FID."""
    return "" if not floor else f" ({fid / floor:5.1f}x the floor)"
