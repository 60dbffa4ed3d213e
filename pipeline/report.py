"""Compare pipeline runs from the MLflow store: a markdown table and figures.

Reads the parent runs (one per configuration) of an experiment, optionally narrowed
by an MLflow filter (e.g. the runs of one `dvc exp` sweep), and for each: the
balancing strategy, REC / GEN-1 / GEN-2 FID, the likelihood bound in bits/dim (stage 1
at its trained and at the test-optimal gamma, two-stage), the first stage's final beta_eff,
active units and KL gradient share, and the training wall time (its stage runs).
"""

from dataclasses import dataclass, field

from pipeline import PipelineError
from pipeline.runs import BALANCE_TAG, ROLE_TAG, STAGE_TAG

LIKELIHOOD = {  # evaluate's likelihood metrics shown in the table (pipeline.likelihood)
    "bpd_iwae_stage1_gamma_trained": "bits/dim stage 1 (IWAE, trained gamma)",
    "bpd_iwae_stage1_gamma_test": "bits/dim stage 1 (IWAE, test gamma)",
    "bpd_iwae_twostage_gamma_test": "bits/dim two-stage (IWAE, test gamma)",
}


@dataclass
class Row:
    run_id: str
    name: str
    label: str
    metrics: dict
    wall_s: float | None
    curves: dict = field(default_factory=dict)  # metric -> [(step, value)] of the train_vae run


def fetch(client, experiment: str, filter_string: str = "", curves=("mse", "kl_common", "gamma", "beta_eff")) -> list[Row]:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise PipelineError(f"no MLflow experiment named '{experiment}' in {client.tracking_uri}")
    query = f"tags.`{ROLE_TAG}` = 'pipeline' AND attributes.status = 'FINISHED'"
    if filter_string:
        query += f" AND {filter_string}"
    parents = client.search_runs([exp.experiment_id], filter_string=query, max_results=1000, order_by=["start_time ASC"])
    rows = []
    for p in parents:
        children = client.search_runs(
            [exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{p.info.run_id}'", max_results=100
        )
        by_stage = {c.data.tags.get(STAGE_TAG): c for c in children}
        train = [(s, by_stage[s]) for s in ("train_vae", "train_stage2") if s in by_stage]
        wall = sum(c.data.metrics.get(f"{s}/stage_wall_time_s", 0.0) for s, c in train) if len(train) == 2 else None
        row = Row(p.info.run_id, p.info.run_name, p.data.tags.get(BALANCE_TAG, "?"), p.data.metrics, wall)
        if "train_vae" in by_stage:
            run_id = by_stage["train_vae"].info.run_id
            row.curves = {m: [(x.step, x.value) for x in client.get_metric_history(run_id, f"train_vae/{m}")]
                          for m in curves}  # fmt: skip
        rows.append(row)
    if not rows:
        raise PipelineError(f"no finished pipeline runs in experiment '{experiment}'" + (f" matching {filter_string}" if filter_string else ""))
    return rows


def _fid_keys(rows: list[Row]) -> list[str]:
    spaces = sorted({k.split("_")[1] for r in rows for k in r.metrics if k.startswith("fid_") and k.endswith("_gen2")})
    return [f"fid_{s}_{w}" for s in spaces for w in ("rec", "gen1", "gen2")]


def markdown_table(rows: list[Row]) -> str:
    fids = _fid_keys(rows)
    head = ["run", "strategy"] + [k.replace("fid_", "FID ").replace("_rec", " REC").replace("_gen1", " GEN-1")
                                  .replace("_gen2", " GEN-2") for k in fids]  # fmt: skip
    head += [LIKELIHOOD[k] for k in LIKELIHOOD]
    head += ["final beta_eff", "active units", "KL grad share", "train wall time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    for r in rows:
        m = r.metrics
        cells = [r.name, r.label] + [fmt(m.get(k), ".2f") for k in fids] + [fmt(m.get(k), ".3f") for k in LIKELIHOOD] + [
            fmt(m.get("train_vae.final_beta_eff"), ".3g"),
            fmt(m.get("train_vae.final_active_units"), ".0f"),
            fmt(m.get("train_vae.final_kl_grad_share"), ".3f"),
            fmt(r.wall_s, ".0f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figures(rows: list[Row], out_dir) -> list:
    """compare.png: FIDs, beta_eff and active units per run; curves.png: training curves per run."""
    import numpy as np

    from pipeline.plots import plt, save_figure

    labels = [r.label for r in rows]
    fids = _fid_keys(rows)
    x = np.arange(len(rows))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), constrained_layout=True)
    for i, k in enumerate(fids[:3]):
        axes[0].bar(x + (i - 1) * 0.27, [r.metrics.get(k, np.nan) for r in rows], 0.27, label=k)
    axes[0].set(title="FID (lower is better)", xticks=x)
    axes[0].set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    axes[0].legend(fontsize=7)
    axes[1].bar(x, [r.metrics.get("train_vae.final_beta_eff", np.nan) for r in rows], color="tab:purple")
    axes[1].set(title="final beta_eff (KL weight vs per-value MSE)", yscale="log", xticks=x)
    axes[1].set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    axes[2].bar(x, [r.metrics.get("train_vae.final_active_units", np.nan) for r in rows], color="tab:green")
    axes[2].set(title="active latent units (stage 1)", xticks=x)
    axes[2].set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    paths = [out_dir / "compare.png", out_dir / "curves.png"]
    save_figure(fig, paths[0])

    titles = {"mse": "per-value MSE", "kl_common": "beta_eff * KL (KL term, common scale)",
              "gamma": "gamma (decoder std)", "beta_eff": "beta_eff"}  # fmt: skip
    fig, axes = plt.subplots(2, 2, figsize=(12, 7), constrained_layout=True)
    for ax, (metric, title) in zip(axes.flat, titles.items()):
        for r in rows:
            pts = r.curves.get(metric, [])
            if pts:
                ax.plot([s for s, _ in pts], [v for _, v in pts], label=r.label)
        ax.set(title=title, xlabel="epoch", yscale="log")
    axes[0, 0].legend(fontsize=7)
    save_figure(fig, paths[1])
    return paths
