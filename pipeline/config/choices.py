"""What params may name, importable without torch: params.yaml is checked
(:mod:`pipeline.config.schema`) before a stage imports torch, so a bad key fails in a moment.

Each balancing strategy's params and their defaults are defined here once, as a small
dataclass that the strategy itself is built from (:class:`pipeline.balance.Balance`) and
the params check reads. The modules that implement the other names keep their own
registries (``models.ARCHITECTURES``, ``data.SOURCES``); tests/test_params.py checks each
agrees with the names here.
"""

from dataclasses import asdict, dataclass

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "celeba", "folder")
NATIVE_SIZE = {"digits": 8, "mnist": 28, "fashion_mnist": 28, "cifar10": 32, "celeba": 64}  # image side when null
UNLABELLED = ("celeba",)  # datasets without class labels (no domain classifier)
ARCHITECTURES = ("conv", "resnet", "resnet_ref", "infogan")  # stage 1, pipeline/models/
PRECISIONS = ("auto", "fp32", "bf16")
MIN_IMAGES = 4  # of each set compared: KID draws subsets of half of them (>= 2), precision/recall k = 3 neighbours
SEED_MAX = 2**32 - 1  # NumPy's seeds are 32-bit
PROTOCOLS = ("clean", "paper")  # evaluation protocols, pipeline/evaluation/preprocessing.py
SAMPLERS = ("gen1", "gen2", "gen2_noise", "gmm")  # pipeline/evaluation/sampling.py


@dataclass(frozen=True)
class AnnealedParams:
    beta: float = 1.0  # the target of the ramp
    anneal_steps: int = 1000  # steps of the linear ramp (or of one cycle)
    cyclical: bool = False  # restart the ramp every anneal_steps (Fu et al. 2019)
    ramp_fraction: float = 0.5  # cyclical: share of each cycle spent ramping


@dataclass(frozen=True)
class FixedParams:
    beta: float = 1.0  # loss = sse + beta * KL


@dataclass(frozen=True)
class LearnedGammaParams:
    lr_factor: float = 1.0  # log gamma learns at lr x lr_factor


@dataclass(frozen=True)
class RunningGammaParams:
    momentum: float = 0.99  # mse_run <- min(mse_run, m * mse_run + (1 - m) * batch_mse)
    min_clamp: bool = True  # keep the min(): the estimate never increases
    k: float = 1.0  # KL factor; the reference code uses (2 * image_side / latent_dim)^2


@dataclass(frozen=True)
class SigmaParams:
    detach: bool = True  # gamma^2 = batch mse, treated as a constant in the gradient
    min_log_gamma: float = -6.0  # soft lower clip of log gamma


STRATEGY_PARAMS = {  # balancing strategy (pipeline/balance/<name>.py) -> its params
    "annealed": AnnealedParams,
    "fixed": FixedParams,
    "learned_gamma": LearnedGammaParams,
    "running_gamma": RunningGammaParams,
    "sigma": SigmaParams,
}
STRATEGIES = {name: asdict(params()) for name, params in STRATEGY_PARAMS.items()}  # name -> {param: default}
