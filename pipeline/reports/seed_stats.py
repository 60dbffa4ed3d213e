"""Runs that differ only in their seeds, as one configuration: mean, standard deviation and n.

A configuration is every param of a run but its seeds (any key whose last part is ``seed``:
train.seed, stage2.seed, evaluate.seed, ...). For each metric of its runs,

    mean = sum(x_i) / n,   std = sqrt(sum((x_i - mean)^2) / (n - 1))   (the sample std; none for n = 1).
"""

import math
import statistics
from dataclasses import dataclass, field


def is_seed(key: str) -> bool:
    return key.rsplit(".", 1)[-1] == "seed"


def config_key(params: dict) -> tuple:
    """The params that make a configuration: all but the seeds, in a fixed order."""
    return tuple(sorted((k, v) for k, v in params.items() if not is_seed(k)))


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float | None  # None for a single value
    n: int

    def format(self, spec: str = ".3g") -> str:
        """ "12.3 ± 0.8" (one value: "12.3")."""
        text = format(self.mean, spec)
        return text if self.std is None else f"{text} ± {format(self.std, spec)}"


def aggregate(values: list[float]) -> Stat:
    """Mean, sample standard deviation and count of ``values`` (at least one)."""
    values = [float(v) for v in values]
    mean = statistics.fmean(values)
    std = (
        None if len(values) == 1 else 0.0 if len(set(values)) == 1 else statistics.stdev(values, mean)
    )  # 0 exactly, not rounding noise
    return Stat(mean, std, len(values))


def separated(a: Stat, b: Stat) -> bool | None:
    """Whether two configurations' means differ by more than twice the standard error of
    their difference, sqrt(std_a^2 / n_a + std_b^2 / n_b); None when either has one seed."""
    if a.std is None or b.std is None:
        return None
    return abs(a.mean - b.mean) > 2 * math.sqrt(a.std**2 / a.n + b.std**2 / b.n)


@dataclass
class Group:
    """One configuration: its runs (one per seed), their metrics aggregated, and their
    training curves aggregated epoch by epoch (epochs every run has)."""

    key: tuple
    runs: list
    label: str = ""
    stats: dict[str, Stat] = field(default_factory=dict)
    curves: dict[str, list[tuple[int, Stat]]] = field(default_factory=dict)

    @property
    def params(self) -> dict:
        return dict(self.key)

    def stat(self, metric: str) -> Stat | None:
        return self.stats.get(metric)


def group(rows: list, label) -> list[Group]:
    """Group ``rows`` (objects with ``params``, ``metrics`` and ``curves``) by configuration,
    in the order each configuration first appears; ``label(params)`` names a group (groups
    whose labels collide get the params that tell them apart appended)."""
    groups: dict[tuple, Group] = {}
    for row in rows:
        key = config_key(row.params)
        groups.setdefault(key, Group(key, []))
        groups[key].runs.append(row)
    out = list(groups.values())
    for g in out:
        names = {m for r in g.runs for m in r.metrics}
        g.stats = {m: aggregate([r.metrics[m] for r in g.runs if m in r.metrics]) for m in sorted(names)}
        for metric in sorted({m for r in g.runs for m in r.curves}):
            per_run = [dict(r.curves.get(metric, [])) for r in g.runs]
            steps = sorted(set.intersection(*(set(c) for c in per_run)))
            g.curves[metric] = [(s, aggregate([c[s] for c in per_run])) for s in steps]
    base = [label(g.params) for g in out]
    for g, name in zip(out, base):
        clash = [o for o, other in zip(out, base) if other == name]
        differ = sorted(k for k, v in g.key if any(o.params.get(k) != v for o in clash))
        g.label = name + (" (" + ", ".join(f"{k}={g.params[k]}" for k in differ) + ")" if differ else "")
    return out
