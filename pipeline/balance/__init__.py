"""Balancing strategies, registered by name (the ``balance.strategy`` param).

A strategy is one small module defining a :class:`Balance` subclass; register it in
``STRATEGIES`` and its constructor keywords become its params.
"""

import inspect

from pipeline import PipelineError
from pipeline.balance.base import Balance, LossTerms, kl_divergence
from pipeline.balance.fixed import Fixed
from pipeline.balance.running_gamma import RunningGamma

STRATEGIES: dict[str, type[Balance]] = {
    "running_gamma": RunningGamma,
    "fixed": Fixed,
}


def build_balance(cfg: dict, where: str = "balance") -> Balance:
    """Build the strategy named by ``cfg['strategy']`` from the keys of ``cfg``.

    Keys that belong to other strategies are ignored (a params section may keep
    settings for several), unknown keys are an error.
    """
    cfg = dict(cfg)
    name = cfg.pop("strategy", None)
    if name not in STRATEGIES:
        raise PipelineError(f"{where}.strategy: unknown strategy '{name}' (choose one of {', '.join(STRATEGIES)})")
    known = {p for cls in STRATEGIES.values() for p in inspect.signature(cls.__init__).parameters} - {"self"}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise PipelineError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    cls = STRATEGIES[name]
    own = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in cfg.items() if k in own})


__all__ = ["Balance", "LossTerms", "STRATEGIES", "build_balance", "kl_divergence"]
