"""The MLflow run hierarchy: one parent run per pipeline configuration, one child run
per stage.

DVC runs each stage in its own process, so MLflow's in-process nesting cannot link
them: every stage finds (or creates) the parent run whose tag ``bvae.config_hash`` is
the hash of the whole params.yaml, and starts its own run under it (tag
``mlflow.parentRunId``), named ``<stage> · <parent name>``.

The parent is named after the DVC experiment and its balance (``dvc exp run -n b01``:
``b01 · fixed beta=0.1``), outside an experiment after its balance and configuration
hash (``running_gamma k=1.0 · 43f6c2``). It carries the params the configuration
uses (a running-gamma run logs no beta), a description of what differs from the commit,
the git commit, and at the end the headline metrics (:mod:`stages.evaluate`).
Experiment name: ``MLFLOW_EXPERIMENT_NAME`` or ``balanced-vae``; it is tagged as
MLflow's "custom model development" kind, so the UI opens it on its training runs.
"""

import os
import subprocess

from pipeline.params import config_hash, flatten, used

DEFAULT_EXPERIMENT = "balanced-vae"
CONFIG_TAG = "bvae.config_hash"
ROLE_TAG = "bvae.role"  # "pipeline" on parent runs, "stage" on stage runs
STAGE_TAG = "bvae.stage"  # the DVC stage of a stage run
BALANCE_TAG = "bvae.balance"  # "fixed beta=0.1": the first stage's balance, on parent runs
CHANGED_TAG = "bvae.changed"  # the params that differ from the commit's params.yaml, on parent runs
# MLflow 3's experiment kind (its UI reads this tag; values in mlflow/server/js, ExperimentKind):
# "custom_model_development" opens the experiment on its training runs, not the GenAI views.
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
LABEL_PARAMS = {  # the params that tell runs of one strategy apart, shown in labels
    "fixed": ("beta",),
    "annealed": ("beta", "cyclical"),
    "running_gamma": ("k",),
    "learned_gamma": ("lr_factor",),
}


def git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def git_commit() -> str | None:
    return (git("rev-parse", "HEAD") or "").strip() or None


def experiment_id(client, artifacts: str | None) -> str:
    """Get or create the experiment (tagged with its kind, unless a user set another);
    a new one keeps its artifacts at ``artifacts`` (None: the store decides)."""
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME", DEFAULT_EXPERIMENT)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, artifact_location=artifacts, tags={KIND_TAG: KIND})
        except Exception:  # created meanwhile by a parallel stage
            exp = client.get_experiment_by_name(name)
    if KIND_TAG not in exp.tags:
        client.set_experiment_tag(exp.experiment_id, KIND_TAG, KIND)
    return exp.experiment_id


def stage_tags(stage: str, params: dict) -> dict:
    """The tags of a stage run: its stage, the configuration hash and role, the git commit."""
    tags = {STAGE_TAG: stage, CONFIG_TAG: config_hash(params), ROLE_TAG: "stage"}
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def balance_label(balance: dict) -> str:
    """A balance block in a few words: "running_gamma k=1.0", "fixed beta=0.1", "sigma"."""
    strategy = balance.get("strategy", "?")
    return " ".join([strategy] + [f"{k}={balance[k]}" for k in LABEL_PARAMS.get(strategy, ()) if k in balance])


def changed(params: dict) -> list[str]:
    """``key=value`` for every param (that the configuration uses) differing from the
    params.yaml of the git commit (the baseline of a ``dvc exp run``); [] without git."""
    import yaml

    committed = git("show", "HEAD:params.yaml")
    try:
        base = flatten(used(yaml.safe_load(committed))) if committed else None
    except (yaml.YAMLError, AttributeError):
        base = None
    if not isinstance(base, dict):
        return []
    return [f"{k}={v}" for k, v in flatten(used(params)).items() if base.get(k, object()) != v]


def description(params: dict, diff: list[str]) -> str:
    """The parent run's description (MLflow shows it on the run page)."""
    train, stage2 = params.get("train", {}), params.get("stage2", {})
    lines = [
        f"Dataset {params.get('prepare', {}).get('dataset', '?')}; stage 1 {balance_label(train.get('balance', {}))}, "
        f"{train.get('epochs', '?')} epochs, latent_dim {train.get('latent_dim', '?')}; stage 2 "
        f"{balance_label(stage2.get('balance', {}))}, {stage2.get('epochs', '?')} epochs.",
        "Changed from the commit: " + (", ".join(diff) if diff else "nothing") + ".",
    ]
    return "\n\n".join(lines)


def parent_run(client, exp_id: str, tags: dict, params: dict) -> tuple[str, str]:
    """The (id, name) of the parent run of this configuration (``tags[CONFIG_TAG]``), created
    when it does not exist yet, with the params the configuration uses and its description."""
    query = f"tags.`{CONFIG_TAG}` = '{tags[CONFIG_TAG]}' AND tags.`{ROLE_TAG}` = 'pipeline'"
    found = client.search_runs([exp_id], filter_string=query, max_results=1)
    if found:
        return found[0].info.run_id, found[0].info.run_name
    from mlflow.entities import Param

    label = balance_label(params.get("train", {}).get("balance", {}))
    exp = os.environ.get("DVC_EXP_NAME")  # set by `dvc exp run` (-n NAME, or a generated name)
    name = f"{exp} · {label}" if exp else f"{label} · {tags[CONFIG_TAG][:6]}"
    diff = changed(params)
    parent_tags = {k: v for k, v in tags.items() if k != STAGE_TAG} | {
        ROLE_TAG: "pipeline", BALANCE_TAG: label, CHANGED_TAG: ", ".join(diff) or "nothing",
        "mlflow.note.content": description(params, diff),
    }  # fmt: skip
    run = client.create_run(exp_id, run_name=name, tags=parent_tags)
    items = [Param(k, str(v)) for k, v in flatten(used(params)).items()]
    for i in range(0, len(items), 100):
        client.log_batch(run.info.run_id, params=items[i : i + 100])
    return run.info.run_id, name
