"""The answer to "is scaling the KL sound?", written from a sweep's runs (`bvae compare --report`).

A markdown page: "The answer" first (the two questions in plain sentences, each number from the
primary comparisons), then the primary comparisons, declared in :data:`PRIMARY` before any run
(the difference with its 95 % confidence interval, Welch's p and Holm's adjusted p over all of
them: :mod:`pipeline.reports.seed_stats`), the set-up read from the runs' params, the tables and
figures of :mod:`pipeline.reports.compare` (mean ± std over seeds), and the detail, whose other
comparisons are marked exploratory (unadjusted p). Paragraphs about a configuration the sweep
did not run are left out. The same runs give the same bytes: nothing depends on the clock.

Longer than 300 lines because the page's prose is here, each sentence beside the numbers
and the comparison it states; a template would part a claim from the test behind it.
"""

import math
import statistics
from collections import Counter
from datetime import UTC, datetime

from pipeline.reports.compare import fid_spaces, floor_key, floor_ratio, markdown_table, variance_table
from pipeline.reports.equivalence import variance_for_beta
from pipeline.reports.seed_stats import ALPHA, Group, Stat, holm, welch_interval, welch_p

FEATURE_SPACES = {  # what each feature space is, in one sentence for the page
    "domain": "the penultimate layer of a classifier trained on these images' labels (offline, in this project): its "
    "distances are in its own units, which differ from one data set to the next, so they rank runs on the "
    "same data but compare with nothing else",
    "inception": "Inception-v3's pool features (the standard FID), the space papers report in; its scale too "
    "depends on the data set and on the number of images compared",
}
CONVERGED = {
    "ratio": 0.1,
    "log_step": 0.05,
}  # learned gamma: |gamma^2 / train MSE - 1| and |d log gamma| in the last epoch


def _num(value: str):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def find(groups: list[Group], strategy: str, **balance) -> Group | None:
    """The configuration whose first stage uses ``strategy`` with these balance params."""
    for g in groups:
        p = g.params
        if p.get("train.balance.strategy") == strategy and all(
            _num(p.get(f"train.balance.{k}")) == v for k, v in balance.items()
        ):
            return g
    return None


def _s(g: Group, key: str, spec: str = ".3g") -> str:
    s = g.stat(key)
    return "n/a" if s is None else s.format(spec)


def _list(items: list[str]) -> list[str]:
    """Markdown bullets that read as one sentence: "- a;", "- b;", ..., "- z."."""
    return [f"- {x};" for x in items[:-1]] + [f"- {items[-1]}."]


def _difference(sa: Stat, sb: Stat, spec: str) -> str:
    """ "-14.33 [-16.20, -12.46], p = 3e-05": b - a, its 95 % interval (Welch) and Welch's p."""
    interval, p = welch_interval(sa, sb), welch_p(sa, sb)
    if interval is None or p is None:
        return "one seed: no spread to judge by"
    diff, lo, hi = interval
    ps = "p < 0.001" if p < 0.001 else f"p = {p:.2g}"
    return f"{format(diff, '+' + spec)} [{format(lo, spec)}, {format(hi, spec)}], {ps}"


def _versus(a: Group, b: Group, key: str, spec: str, what: str) -> str:
    """ "what 47.5 ± 1.2 -> 12.7 ± 0.8 (-34.8 [-36.1, -33.5], p < 0.001, exploratory)": the
    difference b - a with its 95 % interval and Welch's p, unadjusted (an exploratory comparison,
    not one of :data:`PRIMARY`); an FID with a floor also says its ratio to it."""
    sa, sb = a.stat(key), b.stat(key)
    if sa is None or sb is None:
        return f"{what}: not measured"
    ra, rb = floor_ratio(a, key), floor_ratio(b, key)
    scale = f"; {ra:.1f}x -> {rb:.1f}x the floor" if ra is not None and rb is not None else ""
    return f"{what} {sa.format(spec)} -> {sb.format(spec)} ({_difference(sa, sb, spec)}, exploratory{scale})"


# The primary comparisons, declared before the runs: (name, first configuration, second
# configuration, metric, what it measures, format). A configuration is (strategy, balance
# params); "k_ref" stands for running gamma's other k (the reference code's rule).
# Holm's correction runs over all of them.
FIXED_1, FIXED_01 = ("fixed", {"beta": 1.0}), ("fixed", {"beta": 0.1})
RUNNING_1, RUNNING_REF = ("running_gamma", {"k": 1.0}), ("running_gamma", "k_ref")
PRIMARY = (
    ("beta 1 -> 0.1", FIXED_1, FIXED_01, "fid_{space}_rec", "REC FID", ".2f"),
    ("beta 1 -> 0.1", FIXED_1, FIXED_01, "fid_{space}_gen2", "GEN-2 FID", ".2f"),
    ("beta 1 -> 0.1", FIXED_1, FIXED_01, "bpd_iwae_stage1_gamma_iwae", "bits/dim", ".3f"),
    ("beta 0.1 -> running gamma k = 1", FIXED_01, RUNNING_1, "fid_{space}_rec", "REC FID", ".2f"),
    ("beta 0.1 -> running gamma k = 1", FIXED_01, RUNNING_1, "fid_{space}_gen2", "GEN-2 FID", ".2f"),
    ("running gamma k = 1 -> the reference k", RUNNING_1, RUNNING_REF, "fid_{space}_gen2", "GEN-2 FID", ".2f"),
)


def _config(groups: list[Group], spec) -> Group | None:
    strategy, balance = spec
    if balance == "k_ref":
        others = [g for g in groups if g.params.get("train.balance.strategy") == strategy]
        return next((g for g in others if _num(g.params.get("train.balance.k")) != 1.0), None)
    return find(groups, strategy, **balance)


def primary(groups: list[Group]) -> list[dict]:
    """The primary comparisons the runs hold (:data:`PRIMARY`), each with both groups' stats,
    the difference b - a with its 95 % interval, Welch's p and Holm's adjusted p (over those
    held)."""
    space = next((fid_spaces(g.stats)[0] for g in groups if fid_spaces(g.stats)), "?")
    out = []
    for name, first, second, key, what, spec in PRIMARY:
        a, b = _config(groups, first), _config(groups, second)
        key = key.format(space=space)
        if a is None or b is None or a.stat(key) is None or b.stat(key) is None:
            continue
        sa, sb = a.stat(key), b.stat(key)
        interval, p = welch_interval(sa, sb), welch_p(sa, sb)
        if interval is None:
            continue
        out.append(dict(name=name, a=a, b=b, key=key, what=what, spec=spec, sa=sa, sb=sb, interval=interval, p=p))
    for c, adjusted in zip(out, holm([c["p"] for c in out])):
        c["holm"] = adjusted
    return out


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.2g}"


def _said(c: dict) -> str:
    """One comparison in a sentence's words: "from 20.13 to 5.80 (-14.33, 95 % CI -16.20 to
    -12.46; Holm p < 0.001)"."""
    (diff, lo, hi), spec = c["interval"], c["spec"]
    return (
        f"from {format(c['sa'].mean, spec)} to {format(c['sb'].mean, spec)} ({format(diff, '+' + spec)}, "
        f"95 % CI {format(lo, spec)} to {format(hi, spec)}; "
        f"Holm p {'< 0.001' if c['holm'] < 0.001 else '= ' + format(c['holm'], '.2g')})"
    )


def _direction(c: dict, lower_is_better: bool = True) -> str:
    """ "better", "worse" or "no different beyond the seeds' spread" (Holm p >= 0.05)."""
    if c["holm"] >= ALPHA:
        return "no different beyond the seeds' spread"
    down = c["interval"][0] < 0
    return "better" if down == lower_is_better else "worse"


SEM = "evaluate/bpd_iwae_stage1_gamma_iwae_sem"  # a run's bits/dim standard error over its scored test images


def _primary_table(comparisons: list[dict], groups: list[Group]) -> list[str]:
    if not comparisons:
        return []
    lines = [
        "## Primary comparisons",
        "",
        f"Declared before the runs (`pipeline/reports/results_page.py`, `PRIMARY`), {len(comparisons)} of them, so",
        "each p is corrected for their number by Holm's method; a comparison holds when its Holm p < 0.05. Every",
        "other comparison on this page is exploratory (its p unadjusted). Lower is better for all three metrics;",
        "the difference is the second configuration's mean minus the first's, with Welch's 95 % interval.",
        "",
        "| comparison | metric | first | second | difference [95 % CI] | p | Holm p | holds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        (diff, lo, hi), spec = c["interval"], c["spec"]
        lines.append(
            f"| {c['name']} | {c['what']} | {c['sa'].format(spec)} (n={c['sa'].n}) | "
            f"{c['sb'].format(spec)} (n={c['sb'].n}) | {format(diff, '+' + spec)} [{format(lo, spec)}, {format(hi, spec)}] | "
            f"{_p(c['p'])} | {_p(c['holm'])} | {'yes' if c['holm'] < ALPHA else 'no'} |"
        )
    sems = [g.stat(SEM).mean for g in groups if g.stat(SEM)]
    bpd = next((c for c in comparisons if c["key"] == "bpd_iwae_stage1_gamma_iwae"), None)
    if sems and bpd:
        lines += [
            "",
            f"bits/dim is a mean over the scored test images (Set-up): a run's standard error over them is at most "
            f"{max(sems):.4f} bits/dim (a configuration's mean), against the difference of {abs(bpd['interval'][0]):.3f} "
            "above; the images are the same in every run, so that error cancels further in a difference.",
        ]
    return lines + [""]


def _the_answer(groups: list[Group], comparisons: list[dict], dim: int | None) -> list[str]:
    """The two questions, answered in plain sentences from the primary comparisons."""
    by = {(c["name"], c["what"]): c for c in comparisons}
    rec, gen2, bpd = (by.get(("beta 1 -> 0.1", w)) for w in ("REC FID", "GEN-2 FID", "bits/dim"))
    run_rec, run_gen2 = (by.get(("beta 0.1 -> running gamma k = 1", w)) for w in ("REC FID", "GEN-2 FID"))
    one, tenth = find(groups, "fixed", beta=1.0), find(groups, "fixed", beta=0.1)
    if not (one and tenth and rec and gen2):
        return []
    data = tenth.stat("data_gamma2")
    out = [
        "## The answer",
        "",
        '**"Scaling the KL by 0.1 makes my reconstructions recognisable: is that sound?"** '
        f"Going from beta = 1 to 0.1 made reconstructions {_direction(rec)} "
        f"(REC FID {_said(rec)}) and samples through the second stage {_direction(gen2)} (GEN-2 FID {_said(gen2)})"
        + (f"; the likelihood bound was {_direction(bpd)} (bits/dim {_said(bpd)})" if bpd else "")
        + ". "
        "Next to a summed squared error, beta = 0.1 is exactly a Gaussian decoder with variance gamma^2 = 0.05"
        + (f", {0.05 / data.mean:.1f} times the test MSE its own decoder reached ({data.mean:.3g})" if data else "")
        + ": a variance picked by hand.",
    ]
    if run_rec and run_gen2:
        out[-1] += (
            " Setting it from the data instead (running gamma, k = 1) was, against beta = 0.1, "
            f"{_direction(run_rec)} on reconstructions (REC FID {_said(run_rec)}) and {_direction(run_gen2)} on "
            f"GEN-2 samples (GEN-2 FID {_said(run_gen2)})"
        )
        worse = [w for w, c in (("reconstructions", run_rec), ("GEN-2 samples", run_gen2)) if _direction(c) == "worse"]
        out[-1] += (
            f": here the hand-picked beta = 0.1 did better on {' and '.join(worse)}."
            if worse
            else ": the data's own variance does at least as well, with no beta to pick."
        )
    out[-1] += " The numbers: [Primary comparisons](#primary-comparisons), [Results](#results)."
    share_one, share_tenth = one.stat("train_vae.final_kl_grad_share"), tenth.stat("train_vae.final_kl_grad_share")
    out += [
        "",
        '**"What does it do to gradient descent?"** Under Adam, a constant factor on the whole loss cancels, so '
        "sse + 0.1 KL, 10 sse + KL and a decoder variance of 0.05 train identically; the KL sends no gradient to the "
        "decoder, so beta changes only the mix of reconstruction and KL in the encoder's gradient"
        + (
            f": the KL's share of the encoder's gradient in the last epoch went from {share_one.mean:.2f} at beta = 1 "
            f"to {share_tenth.mean:.2f} at beta = 0.1 (exploratory; {_difference(share_one, share_tenth, '.3f')})"
            if share_one and share_tenth
            else ""
        )
        + ". The decoder feels beta only through the codes the encoder then gives it. "
        "The argument and its tests: [What the scale does to gradient descent](#what-the-scale-does-to-gradient-descent).",
        "",
    ]
    return out


def _power(n: int) -> str:
    """What Welch's test can see with ``n`` seeds a side: n - 1 to 2 (n - 1) degrees of freedom
    (the latter when the spreads are equal), so a difference must be t_{0.975, 2(n - 1)} to
    t_{0.975, n - 1} standard errors to pass."""
    if n < 2:
        return "With one seed there is no spread, and no comparison is judged."
    from scipy.stats import t

    lo, hi = t.ppf(1 - ALPHA / 2, 2 * (n - 1)), t.ppf(1 - ALPHA / 2, n - 1)
    return (
        f"With {n} seeds a side the test has {n - 1} to {2 * (n - 1)} degrees of freedom: a difference must be "
        f"{lo:.1f} to {hi:.1f} standard errors to pass, and one that does not pass is not shown to be absent."
    )


def _common(groups: list[Group]) -> dict:
    """The params every configuration shares (seeds aside)."""
    first = groups[0].params
    return {k: v for k, v in first.items() if all(g.params.get(k) == v for g in groups)}


def _setup(groups: list[Group], rows: list, experiment: str, commands: list[str], note: str) -> list[str]:
    c = _common(groups)
    space = (fid_spaces(groups[0].stats) or [str(c.get("reference.features", "?"))])[0]
    floor = groups[0].stat(floor_key(space))
    varying = sorted({k for g in groups for k in g.params} - set(c))
    dim = groups[0].stat("data_dim")
    limit = _num(c.get("prepare.limit_train"))
    epochs, batch = _num(c.get("train.epochs")), _num(c.get("train.batch_size"))
    steps = (
        f" ({int(epochs) * math.ceil(limit / batch):,} optimisation steps)"
        if isinstance(limit, float) and isinstance(epochs, float) and batch
        else ""
    )
    seeds = Counter(len(g.runs) for g in groups)
    start, end = min(r.start for r in rows), max(r.end for r in rows)
    median = statistics.median((r.end - r.start) / 1000 for r in rows)
    total = sum((r.end - r.start) / 1000 for r in rows)
    commits = sorted({r.commit[:7] for r in rows if r.commit})
    day = datetime.fromtimestamp(start / 1000, UTC).strftime("%Y-%m-%d")
    lines = [
        "## Set-up",
        "",
        f"- Data: `{c.get('prepare.dataset', '?')}`, "
        + (f"a seeded subset of {int(limit):,} training images" if isinstance(limit, float) else "all training images")
        + (f", D = {int(dim.mean)} values per image." if dim else "."),
        f"- Stage 1: `{c.get('train.model.arch', '?')}` VAE, latent_dim {c.get('train.latent_dim', '?')}, "
        f"{c.get('train.epochs', '?')} epochs of batch {c.get('train.batch_size', '?')}{steps}, "
        f"Adam at {c.get('train.lr', '?')}, precision {c.get('train.precision', '?')}.",
        f"- Stage 2: dense VAE {c.get('stage2.depth', '?')} x {c.get('stage2.width', '?')}, "
        f"{c.get('stage2.epochs', '?')} epochs of batch {c.get('stage2.batch_size', '?')}, Adam at {c.get('stage2.lr', '?')}, "
        f"balance `{c.get('stage2.balance.strategy', '?')}` in every configuration.",
        f"- Evaluation: FID in the `{space}` feature space, "
        + (
            f"{c['evaluate.num_samples']} samples"
            if _num(c.get("evaluate.num_samples")) not in (None, "None")
            else "as many samples as test images"
        )
        + " per sampler against the test images; likelihood with "
        f"{c.get('evaluate.nll_samples', '?')} importance samples per test image"
        + (
            f", on a fixed random {int(_num(c['evaluate.nll_images'])):,} of the test images (seed 0, the same in "
            "every run; each bits/dim mean's standard error over them is logged as `..._sem`)."
            if isinstance(_num(c.get("evaluate.nll_images")), float)
            else ", on every test image."
        ),
        f"- The feature space: {FEATURE_SPACES.get(space.split('-')[0], 'see docs/evaluation.md')}. "
        + (
            f"Its floor here, the FID of real training images against the test images, is {floor.mean:.3g}; "
            "an FID is also given as a multiple of it (1x: as close to the test images as real images are)."
            if floor
            else "No floor was recorded with these runs."
        ),
        "- What differs between configurations: " + ", ".join(f"`{k}`" for k in varying) + ".",
        "- Seeds: "
        + ", ".join(f"{n} per configuration ({k} configurations)" for n, k in sorted(seeds.items()))
        + "; a seed sets every `*.seed` param that differs between the runs of a configuration.",
        f"- Runs: {len(rows)} finished pipeline runs in MLflow experiment `{experiment}`, code at commit"
        + ("s " if len(commits) > 1 else " ")
        + ", ".join(f"`{x}`" for x in commits)
        + f", {day}. One run (its stages "
        f"after the shared prepare and reference) took a median of {median:.0f} s, all {len(rows)} together "
        f"{total / 60:.0f} minutes; from the first run's start to the last run's end: {(end - start) / 60000:.0f} minutes.",
    ]
    if note:
        lines.append(f"- {note}")
    lines += [
        "",
        "Regenerate this page from the same runs (byte for byte), from the MLflow store or, without it, from",
        "the runs' numbers committed beside the figures (`runs.csv`, `curves.csv`), with",
        "",
        "```bash",
        commands[0],
        commands[1],
        "```",
        "",
    ]
    return lines


def _answer_beta(groups: list[Group], dim: int | None) -> list[str]:
    one, tenth = find(groups, "fixed", beta=1.0), find(groups, "fixed", beta=0.1)
    out = ["## What a fixed beta is: one loss under three names", ""]
    d = f"{dim}" if dim else "D"
    mean_var = f"{variance_for_beta(0.1, dim, 'mse_mean'):.3g}" if dim else "0.05 D"
    out += [
        "A Gaussian decoder with variance gamma^2 has the loss sse / (2 gamma^2) + KL (plus terms",
        "constant in the weights). Multiplying by the constant 2 gamma^2 changes no minimiser, so (D values per image):",
        "",
        "| reconstruction loss | loss with a KL weight beta | decoder variance it assumes | beta = 0.1 here |",
        "|---|---|---|---|",
        "| summed squared error | sse + beta KL | gamma^2 = beta / 2 | gamma^2 = 0.05 (gamma = 0.22 on pixels in [0, 1]) |",
        f"| mean-reduced MSE (PyTorch's default) | mse + beta KL | gamma^2 = beta D / 2 | gamma^2 = {mean_var} (D = {d}) |",
        "| binary cross-entropy | bce + beta KL | none: a Bernoulli decoder has no variance | not an ELBO of any decoder |",
        "",
        'So "beta = 0.1" means nothing until the loss it multiplies is named. Next to a summed squared error it',
        "assumes pixel noise of std 0.22; next to a mean-reduced MSE it assumes noise far wider than the pixel range",
        "(the same beta weighs the KL D times more there); next to BCE it is a tempered likelihood, not a decoder",
        "variance. `beta_eff` in these runs is the beta of the mean-reduced form.",
        "",
    ]
    data = [g.stat("data_gamma2") for g in groups if g.stat("data_gamma2")]
    if data:
        lo, hi = min(s.mean for s in data), max(s.mean for s in data)
        out += [
            "**What the data support.** The trained decoders' test MSE (gamma_test^2, the variance that maximises",
            f'the test ELBO) lies between {lo:.3g} and {hi:.3g} across configurations (table "Decoder variance"):',
            f"a fixed beta of {2 * lo:.3g} to {2 * hi:.3g} next to a summed squared error"
            + (f", or {2 * lo / dim:.3g} to {2 * hi / dim:.3g} next to a mean-reduced MSE." if dim else "."),
            "",
        ]
    if one and tenth:
        out += [
            "## Did beta = 0.1 switch the KL off?",
            "",
            f"Fixed beta = 1 vs beta = 0.1 next to a summed squared error ({len(one.runs)} and {len(tenth.runs)} seeds):",
            "",
        ]
        changes = [
            _versus(one, tenth, "train_vae.final_kl_grad_share", ".3f", "KL share of the encoder gradient"),
            _versus(one, tenth, "train_vae.final_active_units", ".3g", "active latent units"),
            _versus(one, tenth, "train_vae/kl", ".3g", "KL (nats per image)"),
            _versus(
                one, tenth, "train_vae/variance_law_mean", ".3g", "variance law Var(mu) + E[sigma^2] (1 for the prior)"
            ),
        ]
        for space in fid_spaces(one.stats):
            changes += [
                _versus(one, tenth, f"fid_{space}_{w}", ".2f", f"{t} FID ({space})")
                for w, t in (("rec", "REC"), ("gen1", "GEN-1"), ("gen2", "GEN-2"))
            ]
        out += _list(changes)
        share = tenth.stat("train_vae.final_kl_grad_share")
        if share is not None:
            out += [
                "",
                f"At beta = 0.1 the KL still made {share.mean:.0%} of the push on the encoder (last epoch): a lower "
                "weight, not a KL switched off."
                if share.mean >= 0.01
                else f"At beta = 0.1 the KL made only {share.mean:.1%} of the push on the encoder: nearly switched off.",
            ]
        out += [
            "",
            'Whether it "looks better" is the REC FID; whether it generates better is GEN-1 (samples from the',
            "prior) and GEN-2 (through the second stage).",
            "",
            "**Does it cost likelihood?** The bound in bits/dim (IWAE; lower is better) at the gamma each loss",
            "assumed, at gamma_test (gamma^2 = the test MSE, the variance that maximises the test ELBO, not the",
            "IWAE bound) and at the gamma that maximises each model's IWAE bound (a 1-d search on the same draws):",
            "",
        ]
        out += _list(
            [
                _versus(one, tenth, "bpd_iwae_stage1_gamma_trained", ".3f", "stage 1 at its trained gamma"),
                _versus(one, tenth, "bpd_iwae_stage1_gamma_test", ".3f", "stage 1 at gamma_test"),
                _versus(one, tenth, "bpd_iwae_stage1_gamma_iwae", ".3f", "stage 1 at its IWAE-optimal gamma"),
                _versus(one, tenth, "bpd_iwae_twostage_gamma_test", ".3f", "two-stage at gamma_test"),
                _versus(one, tenth, "bpd_iwae_twostage_gamma_iwae", ".3f", "two-stage at its IWAE-optimal gamma"),
            ]
        ) + [""]
    return out


def _answer_gradient(groups: list[Group]) -> list[str]:
    one, tenth = find(groups, "fixed", beta=1.0), find(groups, "fixed", beta=0.1)
    lines = [
        "## What the scale does to gradient descent",
        "",
        "- **The KL sends no gradient to the decoder.** KL(q(z|x) || N(0, I)) depends on the encoder's mu and",
        "  sigma only, so the decoder's gradient is the reconstruction term's alone, whatever beta is.",
        "- **Under plain SGD** a factor on the whole loss is a factor on the learning rate: sse + 0.1 KL and",
        "  10 sse + KL point the same way, and the second takes 10x larger steps.",
        "- **Under Adam** (these runs) even that goes: each step divides by a running RMS of the gradient, so a",
        "  constant factor on the loss cancels (up to Adam's eps). sse + 0.1 KL, 10 sse + KL and a Gaussian",
        '  decoder with gamma^2 = 0.05 train identically: "caring 10x more about reconstruction" and "assuming',
        "  pixel noise of std 0.22\" are one statement. For the same codes the decoder's step does not depend",
        "  on beta; beta changes the mix of reconstruction and KL in the encoder's gradient, and reaches the",
        "  decoder only through the codes the encoder then produces.",
        "  (`tests/test_equivalence.py` checks these statements.)",
    ]
    if one and tenth:
        lines.append(
            f"- **Measured:** {_versus(one, tenth, 'train_vae.final_kl_grad_share', '.3f', 'KL share of the encoder gradient at the last epoch, beta 1 -> 0.1,')}."
        )
    return lines + [""]


def _answer_running(groups: list[Group]) -> list[str]:
    runs = [g for g in groups if g.params.get("train.balance.strategy") == "running_gamma"]
    if not runs:
        return []
    tenth = find(groups, "fixed", beta=0.1)
    out = [
        "## Where running gamma lands",
        "",
        "Running gamma sets gamma^2 to a running average of the training MSE; its loss sse / (2 gamma^2) + k KL",
        "is 1 / (2 gamma^2) times sse + beta KL with beta = 2 k gamma^2: at each step its gradient points as that",
        "fixed beta's (its steps are not that run's: the factor grows as gamma falls and Adam's running RMS lags",
        "it). It starts at gamma = 1, i.e. an equivalent beta of 2k, and the weight falls as reconstructions improve.",
        "",
    ]
    for g in sorted(runs, key=lambda g: _num(g.params.get("train.balance.k"))):
        k = _num(g.params.get("train.balance.k"))
        out.append(
            f"- k = {k:g} (starts at beta = {2 * k:g}): ends at gamma {_s(g, 'train_vae.final_gamma')}, beta_eff "
            f"{_s(g, 'train_vae.final_beta_eff')}, i.e. a fixed beta of {_s(g, 'beta_sse_own')} next to a summed "
            f"squared error; its implied variance is {_s(g, 'implied_over_data')} times the test MSE."
        )
        if tenth:
            for space in fid_spaces(g.stats):
                out.append(
                    f"  Against fixed beta = 0.1: {_versus(tenth, g, f'fid_{space}_gen2', '.2f', f'GEN-2 FID ({space})')}; "
                    f"{_versus(tenth, g, f'fid_{space}_rec', '.2f', 'REC FID')}."
                )
    return out + [
        "",
        "k = 1 is the plain Gaussian ELBO with gamma^2 = the training MSE; the reference code's",
        "k = (2 * image side / latent_dim)^2 multiplies the KL by that factor on top.",
        "",
    ]


def _answer_learned(groups: list[Group]) -> list[str]:
    g = next((g for g in groups if g.params.get("train.balance.strategy") == "learned_gamma"), None)
    if g is None:
        return []
    ratio, step = g.stat("gamma2_over_train_mse"), g.stat("log_gamma_last_epoch")
    if ratio is None or step is None:
        return []
    converged = abs(ratio.mean - 1) <= CONVERGED["ratio"] and step.mean <= CONVERGED["log_step"]
    return [
        "## Learned gamma: did it converge?",
        "",
        f"log gamma learned at {g.params.get('train.balance.lr_factor', '1.0')} x the model's learning rate. Its optimum",
        "for given reconstructions is gamma^2 = the training MSE. At the end gamma^2 / training MSE was",
        f"{ratio.format('.3g')} and log gamma moved {step.format('.2g')} in the last epoch: "
        + (
            "converged (within 10 % of its optimum, moving less than 0.05 per epoch)."
            if converged
            else "not converged (the test: within 10 % of its optimum and moving less than 0.05 per epoch); its numbers "
            "reflect the learning rate and the budget, not the data."
        ),
        "",
    ]


def _answer_stage2(groups: list[Group]) -> list[str]:
    out = [
        "## What the second stage changes",
        "",
        "GEN-1 samples z from N(0, I); GEN-2 from the second VAE fitted on the codes. The gain, GEN-1 FID - GEN-2 FID:",
        "",
    ]
    for g in groups:
        for space in fid_spaces(g.stats):
            gain = g.stat(f"fid_{space}_gen2_gain")
            if gain is not None:
                out.append(
                    f"- {g.label}: {gain.format('.2f')} (GEN-1 {_s(g, f'fid_{space}_gen1', '.2f')} -> "
                    f"GEN-2 {_s(g, f'fid_{space}_gen2', '.2f')}; variance law "
                    f"{_s(g, 'train_vae/variance_law_mean', '.3g')})"
                )
    return out + [
        "",
        "The variance law is Var(mu) + E[sigma^2] averaged over latent units: 1 when the codes' aggregate",
        "matches N(0, I), which GEN-1 assumes.",
        "",
    ]


def _which(groups: list[Group]) -> str:
    """ "Every balancing strategy", or how many of them the runs hold (a sweep still running)."""
    from pipeline.config.choices import STRATEGIES

    ran = {g.params.get("train.balance.strategy") for g in groups}
    if set(STRATEGIES) <= ran:
        return "Every balancing strategy"
    return f"{len(groups)} configurations of {len(ran & set(STRATEGIES))} of the {len(STRATEGIES)} balancing strategies"


def render(
    groups: list[Group], rows: list, *, fig_dir: str, experiment: str, commands: list[str], note: str = ""
) -> str:
    """The whole page. ``fig_dir``: the figures' folder relative to the page; ``commands``: the
    two that regenerate it (from the store, from runs.csv)."""
    dataset = _common(groups).get("prepare.dataset", "?")
    n = sorted({len(g.runs) for g in groups})
    dim_stat: Stat | None = groups[0].stat("data_dim")
    dim = int(dim_stat.mean) if dim_stat else None
    comparisons = primary(groups)
    lines = [
        f"# Is scaling the KL sound? {_which(groups)} on `{dataset}`, {'/'.join(map(str, n))} seed(s) each",
        "",
        "Written by `bvae compare --report` from the runs (in MLflow, or their numbers in `runs.csv` beside the",
        "figures); do not edit by hand. Every number is the mean ± standard deviation over the seeds of a",
        "configuration; a comparison gives the difference with its 95 % confidence interval (Welch's t, the two",
        f"spreads not assumed equal), then p. {_power(max(n))}"
        + (" A configuration with one seed has no spread: it is shown, not compared." if min(n) < 2 <= max(n) else ""),
        "",
    ]
    lines += _the_answer(groups, comparisons, dim) + _primary_table(comparisons, groups)
    lines += _setup(groups, rows, experiment, commands, note)
    lines += [
        "## Results",
        "",
        markdown_table(groups),
        "### Decoder variance",
        "",
        "The variance each configuration's final KL weight implied (beta_eff D / 2), the one the test data",
        "support (gamma_test^2, the test MSE of decoded posterior draws: the test ELBO's optimum), the one that",
        "maximises stage 1's test IWAE bound, and the fixed beta that would match gamma_test^2 next to each",
        "reconstruction loss.",
        "",
        variance_table(groups),
        f"![FID, bits/dim, beta_eff and KL gradient share per configuration]({fig_dir}/compare.png)",
        "",
        f"![Stage 1 per epoch: MSE, KL term, gamma, beta_eff (mean, ±1 std band)]({fig_dir}/curves.png)",
        "",
    ]
    lines += _answer_beta(groups, dim) + _answer_gradient(groups) + _answer_running(groups)
    lines += _answer_learned(groups) + _answer_stage2(groups)
    lines += [
        "## Limits",
        "",
        f"{'/'.join(map(str, n))} seed(s) per configuration, one budget, one data set and one architecture: the",
        "spreads above are over seeds only. Domain FID compares these runs with each other, not with papers.",
        "",
    ]
    return "\n".join(lines).rstrip("\n") + "\n"
