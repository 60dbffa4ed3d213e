"""The runs of the answer page: every balancing strategy at one budget, N seeds each,
and how long they will take.

`bvae answer` and scripts/sweep_strategies.sh run the same configurations
(:func:`configurations`): fixed beta 1 and 0.1 (the question's hand-scaled KL), annealed
to 1 (monotone and cyclical), learned gamma (log gamma at 10x the model's learning rate,
so that it reaches the data's gamma within a short budget), running gamma at k = 1 and at
the reference code's k = (2 * image side / latent_dim)^2 (BalancingVAE
computed_gamma.py:312), and sigma. A seed sets train.seed, stage2.seed and evaluate.seed.

The time estimate (:func:`estimate`) is arithmetic on a few measured rates:

    one run = stage-1 steps x seconds per stage-1 step
            + stage-2 steps x seconds per stage-2 step
            + evaluated images x (1 / feature images per second + seconds per forward pass)
            + scored sets x seconds to score one set (FID, KID, precision/recall)
            + likelihood images x importance samples x seconds per forward pass
            + start-up seconds per run (3 stage processes: Python, torch, MLflow, DVC)

with steps = epochs (``auto`` resolved: :func:`pipeline.config.sizing.epochs`) x ceil(training images / batch size), scored sets = REC and the
samplers (and their rescaled GEN-2), evaluated images = test images (REC) + samples x samplers, likelihood images = evaluate.nll_images (or all test
images), a forward pass = one image through stage 1's encoder
and decoder, and all runs = one run x runs.
"""

import math
from dataclasses import dataclass

from pipeline.config.sizing import epochs

STARTUP_S = 30.0  # three stage processes' start-up, tracking and checkpoints on a 2-core CPU (docs/speed.md)


def reference_k(side: int, latent_dim: int) -> float:
    """The reference code's KL factor k = (2 * image side / latent_dim)^2 (computed_gamma.py:312)."""
    return (2 * side / latent_dim) ** 2


def configurations(k_ref: float) -> list[dict]:
    """Each configuration as the params it sets (dotted keys); where the reference k is 1
    (e.g. 32 px at latent 64), running gamma at k = 1 is that configuration already."""
    b = "train.balance."
    configs = [
        {b + "strategy": "fixed", b + "beta": 1.0},
        {b + "strategy": "fixed", b + "beta": 0.1},
        {b + "strategy": "annealed", b + "beta": 1.0},
        {b + "strategy": "annealed", b + "beta": 1.0, b + "cyclical": True},
        {b + "strategy": "learned_gamma", b + "lr_factor": 10.0},
        {b + "strategy": "running_gamma", b + "k": 1.0},
        {b + "strategy": "running_gamma", b + "k": k_ref},
        {b + "strategy": "sigma"},
    ]
    return [c for i, c in enumerate(configs) if c not in configs[:i]]


def dvc_args(config: dict) -> str:
    """``key=value`` words for `dvc exp run -S` (scripts/sweep_strategies.sh)."""
    return " ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in config.items())


@dataclass(frozen=True)
class Run:
    name: str  # a short name, unique in the plan: "fixed-beta0.1-s0"
    params: dict  # dotted key -> value, seeds included

    def describe(self) -> str:
        return ", ".join(f"{k.removeprefix('train.balance.')}={v}" for k, v in self.params.items() if "seed" not in k)


def runs(k_ref: float, seeds: int) -> list[Run]:
    """Every configuration for seeds 0 .. seeds - 1, seed by seed (the first seed of every
    configuration comes first, so a stopped plan has compared them all once)."""
    out = []
    for seed in range(seeds):
        for config in configurations(k_ref):
            words = [str(v) for k, v in config.items() if k.endswith("strategy")]
            words += [f"{k.rsplit('.', 1)[1]}{v:g}" for k, v in config.items() if isinstance(v, float)]
            words += [k.rsplit(".", 1)[1] for k, v in config.items() if v is True]
            seeds_set = {f"{s}.seed": seed for s in ("train", "stage2", "evaluate")}
            out.append(Run("-".join(words + [f"s{seed}"]), config | seeds_set))
    return out


@dataclass(frozen=True)
class Rates:
    """What one run costs on this machine: measured seconds per step and images per second."""

    stage1_step_s: float
    stage2_step_s: float
    feature_images_per_s: float
    forward_s: float  # one image through stage 1's encoder and decoder
    set_metrics_s: float = 0.0  # FID, KID and precision/recall of one set against the test images
    startup_s: float = STARTUP_S


def _steps(cfg: dict, key: str, num: int) -> int:
    """The optimisation steps of training section ``cfg`` (``train``, ``stage2``) over ``num``
    images, ``epochs: auto`` resolved as the stage resolves it."""
    return epochs(cfg["epochs"], key, num, cfg["batch_size"])[0] * math.ceil(num / cfg["batch_size"])


def estimate(p: dict, num_train: int, num_test: int, rates: Rates) -> float:
    """Seconds one run of params ``p`` takes at ``rates`` (the module's formula)."""
    train, stage2, ev = p["train"], p["stage2"], p["evaluate"]
    steps1, steps2 = _steps(train, "train", num_train), _steps(stage2, "stage2", num_train)
    samplers = len(ev["samplers"]) + (1 if ev["rescale"] else 0)
    images = num_test + (ev["num_samples"] or num_test) * samplers
    return (
        steps1 * rates.stage1_step_s
        + steps2 * rates.stage2_step_s
        + images * (1 / rates.feature_images_per_s + rates.forward_s)
        + (1 + samplers) * rates.set_metrics_s
        + min(ev.get("nll_images") or num_test, num_test) * ev["nll_samples"] * rates.forward_s
        + rates.startup_s
    )


def duration(seconds: float) -> str:
    """``3 h 05 min``, ``12 min``, ``40 s``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"
