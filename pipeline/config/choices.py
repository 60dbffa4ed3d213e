"""What params may name, importable without torch: params.yaml is checked
(:mod:`pipeline.config.schema`) before a stage imports torch, so a bad key fails in a moment.

Each balancing strategy's and each architecture's params and their defaults are defined
here once, as a small dataclass that the strategy or network itself is built from
(:class:`pipeline.balance.Balance`, :class:`pipeline.models.VAE`) and the params check reads.
The data sources keep their own registry (``data.SOURCES``); tests/test_params.py checks it
agrees with the names here.
"""

from dataclasses import asdict, dataclass

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "celeba", "folder")
NATIVE_SIZE = {"digits": 8, "mnist": 28, "fashion_mnist": 28, "cifar10": 32, "celeba": 64}  # image side when null
UNLABELLED = ("celeba",)  # datasets without class labels (no domain classifier)
PRECISIONS = ("auto", "fp32", "bf16")
THREADS = ("all", "adaptive")  # besides a number (pipeline/hardware/threads.py)
MIN_IMAGES = 4  # of each set compared: KID draws subsets of half of them (>= 2), precision/recall k = 3 neighbours
SEED_MAX = 2**32 - 1  # NumPy's seeds are 32-bit
FEATURES = ("auto", "domain", "inception")  # reference.features; auto: feature_space() below
PROTOCOLS = ("clean", "dai_wipf", "asperti")  # evaluation protocols, pipeline/evaluation/protocols/
SAMPLERS = ("gen1", "gen2", "gen2_noise", "gmm")  # pipeline/evaluation/sampling.py


def feature_space(setting: str, labelled: bool) -> str:
    """The FID feature space ``reference.features`` names for this data: ``auto`` is the
    domain classifier's where the data has class labels (offline, trained here), Inception's
    where it has none (the standard FID; needs the Inception-v3 weights)."""
    if setting != "auto":
        return setting
    return "domain" if labelled else "inception"


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


@dataclass(frozen=True)
class ConvParams:
    base_channels: int = 32  # channels after the first conv, doubled at each stride-2 level
    num_down: int = 2  # stride-2 levels; the image side must be divisible by 2**num_down


@dataclass(frozen=True)
class ResNetParams:
    base_channels: int = 32  # channels of the first scale, doubled at each lower scale
    num_scale: int = 3  # scales (the papers: CIFAR-10 3, CelebA 4); side divisible by 2**(num_scale - 1)
    fc_width: int = 512  # width of the dense residual block
    blocks_per_scale: int = 1  # residual blocks per scale


@dataclass(frozen=True)
class ResNetRefParams(ResNetParams):
    num_scale: int = 4  # the reference's CelebA 64x64 network


@dataclass(frozen=True)
class InfoGANParams:
    """None: the reference's layers are fixed (64 and 128 channels, a dense layer of 1024)."""


@dataclass(frozen=True)
class DenseParams:
    """Stage 2's network (the ``stage2`` block's width and depth)."""

    width: int = 1024  # units of each hidden layer
    depth: int = 3  # hidden layers of the encoder and of the decoder


ARCH_PARAMS = {  # stage-1 architecture (pipeline/models/<module>.py) -> its params
    "conv": ConvParams,
    "resnet": ResNetParams,
    "resnet_ref": ResNetRefParams,
    "infogan": InfoGANParams,
}
ARCHITECTURES = {name: asdict(params()) for name, params in ARCH_PARAMS.items()}  # name -> {param: default}
