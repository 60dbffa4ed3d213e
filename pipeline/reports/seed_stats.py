"""Runs that differ only in their seeds, as one configuration: mean, standard deviation and n.

A configuration is every param of a run but its seeds (any key whose last part is ``seed``:
train.seed, stage2.seed, evaluate.seed, ...). For each metric of its runs,

    mean = sum(x_i) / n,   std = sqrt(sum((x_i - mean)^2) / (n - 1))   (the sample std; none for n = 1).

Two configurations are told apart by Welch's t-test (two-sided; the seeds' spreads need not be
equal): with s_a^2 / n_a and s_b^2 / n_b the squared standard errors of the two means,

    t = (mean_a - mean_b) / sqrt(s_a^2 / n_a + s_b^2 / n_b),
    df = (s_a^2 / n_a + s_b^2 / n_b)^2 / ((s_a^2 / n_a)^2 / (n_a - 1) + (s_b^2 / n_b)^2 / (n_b - 1)),
    p = 2 P(T_df > |t|),

and the 95 % confidence interval of mean_b - mean_a is the difference +- t_{0.975, df} times
its standard error. With 5 seeds each, df is between 4 and 8, so a difference needs |t| above
2.31 (df 8) to 2.78 (df 4).

Several comparisons tested at once are corrected for their number by Holm's step-down method
(:func:`holm`): with m p-values sorted p_(1) <= ... <= p_(m), the adjusted p_(i) is
max_{j <= i} min(1, (m - j + 1) p_(j)); a comparison passes when its adjusted p < 0.05, which
keeps the chance of any false pass among the m at most 0.05.
"""

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


ALPHA = 0.05  # the level of the test: "the seeds separate them" when p < ALPHA


def welch_p(a: Stat, b: Stat) -> float | None:
    """The two-sided p-value of Welch's t-test of a's and b's means (module docstring); None
    when either has one seed. Where both spreads are 0 the means are exact: p is 0 if they
    differ, 1 if not."""
    if a.std is None or b.std is None:
        return None
    if a.std == 0 and b.std == 0:
        return 0.0 if a.mean != b.mean else 1.0
    from scipy.stats import ttest_ind_from_stats

    return float(ttest_ind_from_stats(a.mean, a.std, a.n, b.mean, b.std, b.n, equal_var=False).pvalue)


def welch_interval(a: Stat, b: Stat, level: float = 0.95) -> tuple[float, float, float] | None:
    """b's mean minus a's, and the ``level`` confidence interval of that difference by Welch's
    t (module docstring): (difference, low, high); None when either has one seed."""
    if a.std is None or b.std is None:
        return None
    diff = b.mean - a.mean
    va, vb = a.std**2 / a.n, b.std**2 / b.n
    if va + vb == 0:
        return diff, diff, diff
    from scipy.stats import t

    df = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    half = t.ppf(0.5 + level / 2, df) * (va + vb) ** 0.5
    return diff, diff - half, diff + half


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (module docstring), in the order given."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


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
