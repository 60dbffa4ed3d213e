"""The MLflow run hierarchy: one parent run per pipeline configuration, one child run
per stage.

DVC runs each stage in its own process, so MLflow's in-process nesting cannot link
them: every stage finds (or creates) the parent run whose tag ``bvae.config_hash`` is
the hash of the whole params.yaml, and starts its own run under it (tag
``mlflow.parentRunId``). The parent carries all params, the git commit and the final
metrics. Experiment name: ``MLFLOW_EXPERIMENT_NAME`` or ``balanced-vae``.
"""

import os
import subprocess

from pipeline.params import config_hash, flatten

DEFAULT_EXPERIMENT = "balanced-vae"
CONFIG_TAG = "bvae.config_hash"
ROLE_TAG = "bvae.role"  # "pipeline" on parent runs, "stage" on stage runs


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def experiment_id(client, artifacts: str | None) -> str:
    """Get or create the experiment; a new one keeps its artifacts at ``artifacts`` (None: the store decides)."""
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME", DEFAULT_EXPERIMENT)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifacts)
    except Exception:  # created meanwhile by a parallel stage
        return client.get_experiment_by_name(name).experiment_id


def stage_tags(stage: str, params: dict) -> dict:
    """The tags of a stage run: its stage, the configuration hash and role, the git commit."""
    tags = {"bvae.stage": stage, CONFIG_TAG: config_hash(params), ROLE_TAG: "stage"}
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def parent_run(client, exp_id: str, tags: dict, params: dict) -> str:
    """The id of the parent run of this configuration (``tags[CONFIG_TAG]``), created with
    every param when it does not exist yet (named after the DVC experiment when there is one)."""
    query = f"tags.`{CONFIG_TAG}` = '{tags[CONFIG_TAG]}' AND tags.`{ROLE_TAG}` = 'pipeline'"
    found = client.search_runs([exp_id], filter_string=query, max_results=1)
    if found:
        return found[0].info.run_id
    from mlflow.entities import Param

    name = os.environ.get("DVC_EXP_NAME") or f"pipeline-{tags[CONFIG_TAG][:8]}"
    parent_tags = {k: v for k, v in tags.items() if k != "bvae.stage"} | {ROLE_TAG: "pipeline"}
    run = client.create_run(exp_id, run_name=name, tags=parent_tags)
    items = [Param(k, str(v)) for k, v in flatten(params).items()]
    for i in range(0, len(items), 100):
        client.log_batch(run.info.run_id, params=items[i : i + 100])
    return run.info.run_id
