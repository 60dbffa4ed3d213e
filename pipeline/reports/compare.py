"""Compare pipeline runs from the MLflow store: one row per configuration, seeds aggregated.

Reads an experiment's finished parent runs (optionally narrowed by an MLflow filter), their
stage runs' metrics and stage 1's training curves. Runs that differ only in their seeds are
one configuration (:mod:`pipeline.reports.seed_stats`): every number is its mean ± std. Per
configuration: the FID of REC and of every sampler (the best in bold), the likelihood in
bits/dim, stage 1's final gamma, beta_eff, active units and KL gradient share, the training
wall time, and the decoder
variance its balance implied against the one the test data supports
(:mod:`pipeline.reports.equivalence`).
"""

import math
from dataclasses import dataclass, field, replace

from pipeline import PipelineError
from pipeline.config.params import balance_label
from pipeline.reports.equivalence import beta_for_variance, variance_for_beta
from pipeline.reports.seed_stats import Group, group
from pipeline.tracking.runs import ROLE_TAG, STAGE_TAG

LIKELIHOOD = {  # evaluate's likelihood metrics shown in the table (pipeline.evaluation.likelihood)
    "bpd_iwae_stage1_gamma_trained": "bits/dim stage 1 (IWAE, trained gamma)",
    "bpd_iwae_stage1_gamma_test": "bits/dim stage 1 (IWAE, gamma_test)",
    "bpd_iwae_stage1_gamma_iwae": "bits/dim stage 1 (IWAE, IWAE-optimal gamma)",
    "bpd_iwae_twostage_gamma_test": "bits/dim two-stage (IWAE, gamma_test)",
}
STAGE1 = {  # stage 1's last epoch, in the table
    "train_vae.final_gamma": ("final gamma", ".3g"),
    "train_vae.final_beta_eff": ("final beta_eff", ".3g"),
    "train_vae.final_active_units": ("active units", ".3g"),
    "train_vae.final_kl_grad_share": ("KL grad share", ".2f"),
}
VARIANCE = {  # per configuration: the decoder variance, implied and supported (derived below)
    "implied_gamma2": ("implied gamma^2 = beta_eff D / 2", ".3g"),
    "data_gamma2": ("test gamma^2 (test MSE)", ".3g"),
    "iwae_gamma2": ("IWAE-optimal gamma^2", ".3g"),
    "implied_over_data": ("implied / test", ".3g"),
    "beta_sse_own": ("its beta, summed SSE", ".3g"),
    "beta_sse_match": ("beta to match test, summed SSE", ".3g"),
    "beta_mean_match": ("beta to match test, mean MSE", ".3g"),
}
CURVES = ("mse", "kl_common", "gamma", "beta_eff")
SHARED_STAGES = ("prepare", "reference")  # a sweep's runs share them: a run's time is its own stages'


@dataclass
class Row:
    """One pipeline run: its params, its metrics (the parent's and the stage runs' as
    ``<stage>/<name>``; :func:`configurations` adds the derived ones), stage 1's curves and
    the start and end (ms) of its own stages (those after the shared prepare and reference)."""

    run_id: str
    name: str
    params: dict
    metrics: dict
    curves: dict = field(default_factory=dict)  # metric -> [(epoch, value)] of the train_vae run
    start: int = 0
    end: int = 0
    commit: str = ""


def fetch(client, experiment: str, filter_string: str = "") -> list[Row]:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise PipelineError(f"no MLflow experiment named '{experiment}' in {client.tracking_uri}")
    query = f"tags.`{ROLE_TAG}` = 'pipeline' AND attributes.status = 'FINISHED'"
    if filter_string:
        query += f" AND {filter_string}"
    parents = client.search_runs(
        [exp.experiment_id], filter_string=query, max_results=1000, order_by=["start_time ASC"]
    )
    rows = []
    for p in parents:
        children = client.search_runs(
            [exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{p.info.run_id}'", max_results=100
        )
        by_stage = {c.data.tags.get(STAGE_TAG): c for c in children}
        if "evaluate" not in by_stage:  # stopped at an earlier stage (`dvc repro reference`): nothing to compare
            continue
        metrics = dict(p.data.metrics)
        for c in children:
            metrics |= c.data.metrics  # keyed <stage>/<name>
        own = [c for c in children if c.data.tags.get(STAGE_TAG) not in SHARED_STAGES] or [p]
        params = dict(p.data.params)
        if "data_dim" in params:  # a param since the parent carries no constants as metrics (a metric before)
            metrics["data_dim"] = float(params.pop("data_dim"))
        row = Row(
            p.info.run_id,
            p.info.run_name,
            params,
            metrics,
            start=min(c.info.start_time for c in own),
            end=max(c.info.end_time or c.info.start_time for c in own),
            commit=p.data.tags.get("mlflow.source.git.commit", ""),
        )
        if "train_vae" in by_stage:
            run_id = by_stage["train_vae"].info.run_id
            row.curves = {
                m: [(x.step, x.value) for x in client.get_metric_history(run_id, f"train_vae/{m}")] for m in CURVES
            }
        rows.append(row)
    if not rows:
        raise PipelineError(
            f"no finished pipeline runs in experiment '{experiment}'"
            + (f" matching {filter_string}" if filter_string else "")
        )
    return rows


def derived(m: dict, curves: dict) -> dict:
    """Numbers computed from a run's metrics:

    - implied_gamma2: the decoder variance stage 1's final KL weight implies, beta_eff D / 2;
    - data_gamma2: the one the test data supports, gamma_test^2 (the ELBO-optimal variance:
      the test MSE of decoded posterior draws), and implied_over_data, their ratio;
    - iwae_gamma2: the variance that maximises stage 1's test IWAE bound, gamma_iwae_stage1^2;
    - beta_sse_own: the final balance as a fixed beta next to a summed squared error;
      beta_sse_match / beta_mean_match: the fixed beta that would match data_gamma2 next to
      a summed and a mean-reduced squared error (none exists next to BCE);
    - gamma2_over_train_mse: final gamma^2 / the last epoch's training MSE (1 where the
      variance has reached its optimum for the training reconstructions);
    - log_gamma_last_epoch: |change of log gamma| over the last epoch (0 when it stopped moving);
    - fid_<space>_gen2_gain: GEN-1 FID - GEN-2 FID, what the second stage gained;
    - train_wall_s: the two training stages' wall time.
    """
    out = {}
    walls = [m.get(f"{s}/stage_wall_time_s") for s in ("train_vae", "train_stage2")]
    if None not in walls:
        out["train_wall_s"] = sum(walls)
    dim, beta_eff, gamma_test = m.get("data_dim"), m.get("train_vae.final_beta_eff"), m.get("gamma_test")
    if dim and beta_eff is not None:
        out["implied_gamma2"] = variance_for_beta(beta_eff, dim, "mse_mean")
        out["beta_sse_own"] = beta_for_variance(out["implied_gamma2"], dim, "sse")
    if dim and gamma_test:
        out["data_gamma2"] = gamma_test**2
        out["beta_sse_match"] = beta_for_variance(out["data_gamma2"], dim, "sse")
        out["beta_mean_match"] = beta_for_variance(out["data_gamma2"], dim, "mse_mean")
        if "implied_gamma2" in out:
            out["implied_over_data"] = out["implied_gamma2"] / out["data_gamma2"]
    if m.get("gamma_iwae_stage1"):
        out["iwae_gamma2"] = m["gamma_iwae_stage1"] ** 2
    if m.get("train_vae.final_gamma") and m.get("train_vae/mse"):
        out["gamma2_over_train_mse"] = m["train_vae.final_gamma"] ** 2 / m["train_vae/mse"]
    gamma = curves.get("gamma", [])
    if len(gamma) >= 2 and gamma[-1][1] > 0 and gamma[-2][1] > 0:
        out["log_gamma_last_epoch"] = abs(math.log(gamma[-1][1]) - math.log(gamma[-2][1]))
    for space in fid_spaces(m):
        if f"fid_{space}_gen1" in m and f"fid_{space}_gen2" in m:
            out[f"fid_{space}_gen2_gain"] = m[f"fid_{space}_gen1"] - m[f"fid_{space}_gen2"]
    return out


def fid_spaces(metrics) -> list[str]:
    """The feature spaces (and protocols) with a GEN-2 FID: ["domain"], ["inception-asperti"], ..."""
    return sorted(k[len("fid_") : -len("_gen2")] for k in metrics if k.startswith("fid_") and k.endswith("_gen2"))


def label(params: dict) -> str:
    """A configuration's name: its first stage's balance, from its params ("fixed beta=0.1")."""
    prefix = "train.balance."
    return balance_label({k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)})


def configurations(rows: list[Row]) -> list[Group]:
    """The runs as configurations (seeds aggregated), each run's derived numbers added to its own."""
    return group([replace(r, metrics=r.metrics | derived(r.metrics, r.curves)) for r in rows], label)


# the scored image sets in table order: REC, then the samplers (pipeline.evaluation.sampling)
SETS = dict(
    rec="REC", gen1="GEN-1", gen2="GEN-2", gen2_noise="GEN-2 + noise", gen2_rescaled="GEN-2 rescaled", gmm="GMM"
)


def fid_keys(groups: list[Group]) -> list[str]:
    """``fid_<space>_<set>`` of every feature space and scored set the runs hold, in :data:`SETS` order."""
    spaces = sorted({s for g in groups for s in fid_spaces(g.stats)})
    return [f"fid_{s}_{w}" for s in spaces for w in SETS if any(g.stat(f"fid_{s}_{w}") for g in groups)]


def fid_title(key: str) -> str:
    space, name = key.removeprefix("fid_").split("_", 1)
    return f"FID {space} {SETS[name]}"


def best_sampler(fids: dict, space: str) -> str | None:
    """The key ``fid_<space>_<sampler>`` of ``fids`` (key -> FID) with the lowest FID (REC is no sampler)."""
    keys = [f"fid_{space}_{w}" for w in SETS if w != "rec" and f"fid_{space}_{w}" in fids]
    return min(keys, key=fids.get, default=None)


def _cell(g: Group, key: str, spec: str) -> str:
    s = g.stat(key)
    return "-" if s is None else s.format(spec)


def floor_key(space: str) -> str:
    """The floor of FIDs in ``space`` ("domain", "inception-asperti"): real training images
    against the test images in its features (the reference stage's; a protocol changes
    only the generated images' preprocessing)."""
    return f"fid_{space.split('-')[0]}_train_vs_test"


def floor_ratio(g: Group, key: str) -> float | None:
    """An FID (``fid_<space>_<what>``) over its floor: mean over mean (None without one)."""
    space = key.removeprefix("fid_").rsplit("_", 1)[0].removesuffix("_gen2")
    fid, floor = g.stat(key), g.stat(floor_key(space))
    return None if fid is None or floor is None or not floor.mean else fid.mean / floor.mean


def _fid_cell(g: Group, key: str) -> str:
    ratio = floor_ratio(g, key)
    return _cell(g, key, ".2f") + ("" if ratio is None else f" ({ratio:.1f}x)")


def markdown_table(groups: list[Group]) -> str:
    """Scores per configuration, mean ± std over its seeds."""
    fids = fid_keys(groups)
    head = ["configuration", "seeds"] + [fid_title(k) for k in fids] + list(LIKELIHOOD.values())
    head += [title for title, _ in STAGE1.values()] + ["train wall time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        means = {k: st.mean for k, st in g.stats.items()}
        best = {best_sampler(means, s) for s in fid_spaces(g.stats)}
        fid_cells = [f"**{_fid_cell(g, k)}**" if k in best else _fid_cell(g, k) for k in fids]
        cells = [g.label, str(len(g.runs))] + fid_cells + [_cell(g, k, ".3f") for k in LIKELIHOOD]
        cells += [_cell(g, k, spec) for k, (_, spec) in STAGE1.items()] + [_cell(g, "train_wall_s", ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    floors = {}  # the same in every configuration: they share the reference stage
    for g in groups:
        for space in fid_spaces(g.stats):
            if (f := g.stat(floor_key(space))) is not None:
                floors.setdefault(space, f.mean)
    lines += ["", "In bold: each configuration's best sampler, the lowest mean FID of its generated sets."]
    if floors:
        lines[-1] += (
            " FID (Nx): N times the floor, the FID of real training images against the test images in the same "
            "features (" + "; ".join(f"{s} {f:.3g}" for s, f in sorted(floors.items())) + ")."
        )
    return "\n".join(lines) + "\n"


def variance_table(groups: list[Group]) -> str:
    """Per configuration: the decoder variance its final balance implied, the one the test
    data supports, and the fixed betas that would match the latter (mean ± std)."""
    head = ["configuration"] + [title for title, _ in VARIANCE.values()] + ["beta to match test, BCE"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        cells = [g.label] + [_cell(g, k, spec) for k, (_, spec) in VARIANCE.items()] + ["none (no variance)"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
