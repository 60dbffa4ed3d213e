"""What params may name, importable without torch: params.yaml is checked
(:mod:`pipeline.config.schema`) before a stage imports torch, so a bad key fails in a moment.

The modules that implement these names keep their own registries (``models.ARCHITECTURES``,
``balance.STRATEGIES``, ...); tests/test_params.py checks each agrees with this list, so
a new architecture or strategy is added there and here.
"""

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "celeba", "folder")
NATIVE_SIZE = {"digits": 8, "mnist": 28, "fashion_mnist": 28, "cifar10": 32, "celeba": 64}  # image side when null
UNLABELLED = ("celeba",)  # datasets without class labels (no domain classifier)
ARCHITECTURES = ("conv", "resnet", "resnet_ref", "infogan")  # stage 1, pipeline/models.py
PRECISIONS = ("auto", "fp32", "bf16")
MIN_IMAGES = 4  # of each set compared: KID draws subsets of half of them (>= 2), precision/recall k = 3 neighbours
SEED_MAX = 2**32 - 1  # NumPy's seeds are 32-bit
PROTOCOLS = ("clean", "paper")  # evaluation protocols, pipeline/evaluation/preprocessing.py
SAMPLERS = ("gen1", "gen2", "gen2_noise", "gmm")  # pipeline/evaluation/sampling.py
STRATEGIES = {  # balancing strategy -> its params and their defaults (its constructor's keywords), pipeline/balance/
    "annealed": {"beta": 1.0, "anneal_steps": 1000, "cyclical": False, "ramp_fraction": 0.5},
    "fixed": {"beta": 1.0},
    "learned_gamma": {"lr_factor": 1.0},
    "running_gamma": {"momentum": 0.99, "min_clamp": True, "k": 1.0},
    "sigma": {"detach": True, "min_log_gamma": -6.0},
}
