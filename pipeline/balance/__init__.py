"""Balancing strategies, registered by name (the ``balance.strategy`` param).

A strategy is one module in this package defining a :class:`Balance` subclass
decorated with ``@register("name")``; every module here is imported below, so adding
a strategy touches its own file, its test and its params in :mod:`pipeline.config.choices`
(a dataclass of its params and their defaults, from which the strategy is built and
against which params.yaml is checked before torch is imported).
"""

import importlib
import pkgutil

from pipeline import PipelineError
from pipeline.balance.base import STRATEGIES, Balance, LossTerms, kl_divergence
from pipeline.config import choices

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def strategy_params() -> set[str]:
    """Every key any strategy accepts."""
    return {key for params in choices.STRATEGIES.values() for key in params}


def build_balance(cfg: dict, where: str = "balance") -> Balance:
    """Build the strategy named by ``cfg['strategy']`` from the keys of ``cfg``.

    Keys that belong to other strategies are ignored (one params block keeps the
    settings of all of them, so a sweep only changes ``strategy``); unknown keys are
    an error.
    """
    cfg = dict(cfg)
    name = cfg.pop("strategy", None)
    if name not in STRATEGIES:
        raise PipelineError(f"{where}.strategy: unknown strategy '{name}' (choose one of {', '.join(STRATEGIES)})")
    unknown = sorted(set(cfg) - strategy_params())
    if unknown:
        raise PipelineError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(strategy_params()))})"
        )
    own = choices.STRATEGIES[name]
    return STRATEGIES[name](**{k: v for k, v in cfg.items() if k in own})


__all__ = ["Balance", "LossTerms", "STRATEGIES", "build_balance", "kl_divergence", "strategy_params"]
