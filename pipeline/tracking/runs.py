"""The MLflow run tree: one parent run per pipeline configuration, one child run per stage.

DVC runs each stage in its own process, so MLflow's in-process nesting cannot link them:
every stage finds (or creates) the parent run whose tag ``bvae.config_hash`` is the hash of
the whole params.yaml and starts its own run under it, named ``<stage> · <parent name>``.
The parent is named after the DVC experiment and its balance (``b01 · fixed beta=0.1``),
outside one after its balance and configuration hash (``running_gamma k=1.0 · 43f6c2``);
what it carries: docs/tracking.md. The experiment (``MLFLOW_EXPERIMENT_NAME`` or
``balanced-vae``) is MLflow's "custom model development" kind (:data:`KIND_TAG`).
"""

import os
import subprocess

from pipeline.config.params import balance_label, config_hash, description, flatten, used
from pipeline.tracking.store import experiment_name

CONFIG_TAG = "bvae.config_hash"
ROLE_TAG = "bvae.role"  # "pipeline" on parent runs, "stage" on stage runs
STAGE_TAG = "bvae.stage"  # the DVC stage of a stage run
KEY_TAG = "bvae.stage_key"  # what the stage ran on: params, code, inputs (stages.code_deps.stage_key)
BALANCE_TAG = "bvae.balance"  # "fixed beta=0.1": the first stage's balance, on parent runs
CHANGED_TAG = "bvae.changed"  # the params that differ from the commit's params.yaml, on parent runs
# MLflow 3's experiment kind (its UI reads this tag; values in mlflow/server/js, ExperimentKind):
# "custom_model_development" opens the experiment on its training runs, not the GenAI views.
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
DIRTY_TAG = "bvae.git.dirty"  # "true" on a run made from a tree with uncommitted changes
DIFF_FILE = "code/uncommitted.diff"  # those changes, an artifact of the stage run
WRITTEN = ("dvc.lock", "params.yaml", "metrics", "plots")  # what `dvc repro` and `dvc exp run -S` rewrite in git


def git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def experiment_id(client, artifacts: str | None) -> str:
    """Get or create the experiment (tagged with its kind, unless a user set another);
    a new one keeps its artifacts at ``artifacts`` (None: the store decides)."""
    name = experiment_name()
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, artifact_location=artifacts, tags={KIND_TAG: KIND})
        except Exception:  # created meanwhile by a parallel stage, or the store cannot be written
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if KIND_TAG not in exp.tags:
        client.set_experiment_tag(exp.experiment_id, KIND_TAG, KIND)
    return exp.experiment_id


def code_state() -> tuple[str | None, str]:
    """The git commit of the working tree, and its uncommitted changes to tracked files as a
    diff ("" when there are none), leaving out what `dvc repro` itself rewrites (dvc.lock and
    the stages' outputs that git keeps: metrics/, plots/) and params.yaml, which `dvc exp run
    -S` rewrites and the runs record as params (and ``bvae.changed``)."""
    diff = git("diff", "HEAD", "--", ".", *[f":(exclude){path}" for path in WRITTEN])
    return (git("rev-parse", "HEAD") or "").strip() or None, diff or ""


def stage_tags(stage: str, params: dict, commit: str | None, dirty: bool) -> dict:
    """The tags of a stage run: its stage, the configuration hash and role, the git commit,
    and whether the tree had uncommitted changes."""
    tags = {STAGE_TAG: stage, CONFIG_TAG: config_hash(params), ROLE_TAG: "stage"}
    if commit:
        tags["mlflow.source.git.commit"] = commit
    if dirty:
        tags[DIRTY_TAG] = "true"
    return tags


def note_code(client, parent_id: str, stage: str, commit: str | None, diff: str) -> None:
    """Record on the parent run the code that its stage ``stage`` ran: the tag
    ``bvae.code.<stage>`` (the commit, and whether the tree had uncommitted changes, whose
    diff is then the artifact ``code/<stage>.diff``); the parent is tagged ``bvae.git.dirty``
    while the latest run of any of its stages had such changes."""
    dirty = " + uncommitted changes"
    client.set_tag(parent_id, f"bvae.code.{stage}", f"{commit or 'no git commit'}{dirty if diff else ''}")
    if commit:
        client.set_tag(parent_id, "mlflow.source.git.commit", commit)
    if diff:
        client.log_text(parent_id, diff, f"code/{stage}.diff")
    tags = client.get_run(parent_id).data.tags
    if any(k.startswith("bvae.code.") and v.endswith(dirty) for k, v in tags.items()):
        client.set_tag(parent_id, DIRTY_TAG, "true")
    elif DIRTY_TAG in tags:
        client.delete_tag(parent_id, DIRTY_TAG)


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


def stage_run(client, exp_id: str, parent_id: str, tags: dict) -> str | None:
    """The id of the run under ``parent_id`` of the same stage on the same inputs (its
    ``KEY_TAG``), or None: a configuration has one run per stage and key."""
    query = " AND ".join(
        [f"tags.`mlflow.parentRunId` = '{parent_id}'"] + [f"tags.`{k}` = '{tags[k]}'" for k in (STAGE_TAG, KEY_TAG)]
    )
    found = client.search_runs([exp_id], filter_string=query, max_results=1)
    return found[0].info.run_id if found else None


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
    # MLflow's Source column (what follows the last '/'): the command that made the run (DVC sets DVC_STAGE)
    source = "dvc repro" if os.environ.get("DVC_STAGE") else f"python -m stages.{tags[STAGE_TAG]}"
    parent_tags = {k: v for k, v in tags.items() if k not in (STAGE_TAG, DIRTY_TAG)} | {
        ROLE_TAG: "pipeline",
        BALANCE_TAG: label,
        CHANGED_TAG: ", ".join(diff) or "nothing",
        "mlflow.note.content": description(params, diff),
        "mlflow.source.type": "LOCAL",
        "mlflow.source.name": f"dvc exp run -n {exp}" if exp else source,
    }
    run = client.create_run(exp_id, run_name=name, tags=parent_tags)
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in flatten(used(params)).items()])
    return run.info.run_id, name
