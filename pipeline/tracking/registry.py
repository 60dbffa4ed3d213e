"""The MLflow model registry: every evaluate registers the two-stage generator as a new
version of ``evaluate.register.name``; two aliases point at versions.

- ``evaluate.register.alias`` (default ``candidate``) follows the latest version.
- ``evaluate.register.champion`` (default ``champion``) moves to the new version only when
  its GEN-2 FID beats the holder's, in the same feature space and protocol (the metric's
  name says both, e.g. ``fid_domain_gen2``) on the same dataset. FIDs from other data or
  another feature space are not comparable: the alias then stays, and says why.

Each version carries its headline metrics, its balance, dataset and parent run as tags,
and the parent run's description. ``bvae sample --model models:/NAME@champion`` samples
from it (:func:`resolve`).
"""

from pipeline import PipelineError

SCORE_TAG = "bvae.score"  # the metric an alias compares (fid_<space>_gen2)
DATASET_TAG = "bvae.dataset"
PARENT_TAG = "bvae.parent_run_id"


def new_version(client, name: str, model_id: str, run_id: str) -> str:
    """Register the logged model ``model_id`` as a new version of ``name`` (created if it is the
    first), with ``run_id`` (the pipeline's parent run) as its source run; returns the version."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":  # or registered meanwhile by a parallel evaluate
            raise
    return str(client.create_model_version(name, f"models:/{model_id}", run_id=run_id, model_id=model_id).version)


def describe_version(client, name: str, version: str, metrics: dict, parent_id: str | None, score: str) -> dict:
    """Tag version ``version`` with ``metrics``, the metric aliases compare, and its parent
    run's name, balance and dataset; copy the parent's description. Returns the tags."""
    from pipeline.tracking.runs import BALANCE_TAG

    tags = {k: f"{v:.6g}" for k, v in metrics.items()} | {SCORE_TAG: score}
    note = ""
    if parent_id:
        parent = client.get_run(parent_id)
        tags |= {
            PARENT_TAG: parent_id,
            "bvae.parent_run_name": parent.info.run_name,
            BALANCE_TAG: parent.data.tags.get(BALANCE_TAG, "?"),
            DATASET_TAG: parent.data.params.get("prepare.dataset", "?"),
        }
        note = parent.data.tags.get("mlflow.note.content", "")
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    shown = ", ".join(f"{k} {v}" for k, v in tags.items() if k in metrics)
    client.update_model_version(name, version, description=f"{note}\n\nMetrics: {shown}.".strip())
    return tags


def promote(client, name: str, version: str, tags: dict, champion: str) -> str:
    """Point ``champion`` at ``version`` if its score beats the holder's; returns what happened."""
    from mlflow.exceptions import MlflowException

    score = tags[SCORE_TAG]
    if score not in tags:
        return f"@{champion} not moved: this run has no {score} (evaluate.samplers has no gen2)"
    try:
        holder = client.get_model_version_by_alias(name, champion)
    except MlflowException:
        holder = None
    if holder is None:
        client.set_registered_model_alias(name, champion, version)
        return f"@{champion} -> version {version} (the first, {score} {tags[score]})"
    old, new = holder.tags.get(score), float(tags[score])
    if old is None or holder.tags.get(DATASET_TAG) != tags.get(DATASET_TAG):
        return (
            f"@{champion} stays at version {holder.version}: it was scored on other data or in another feature "
            f"space ({holder.tags.get(DATASET_TAG, '?')}, no {score}); use a new evaluate.register.name for a new "
            "data set, or move the alias in the MLflow UI"
        )
    if new < float(old):
        client.set_registered_model_alias(name, champion, version)
        return f"@{champion} -> version {version} ({score} {new:.6g} beats version {holder.version}'s {old})"
    return f"@{champion} stays at version {holder.version} ({score} {old}; this version's {new:.6g} is not lower)"


def resolve(client, ref: str) -> tuple[str, str]:
    """The parent (pipeline) run of ``ref`` and a sentence saying what ``ref`` is. ``ref``:
    ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, or the id of a pipeline run or of
    one of its stage runs."""
    from mlflow.exceptions import MlflowException

    from pipeline.tracking.runs import ROLE_TAG

    try:
        if ref.startswith("models:/"):
            spec = ref[len("models:/") :]
            if "@" in spec:
                model, alias = spec.split("@", 1)
                version = client.get_model_version_by_alias(model, alias)
            else:
                model, _, number = spec.rpartition("/")
                version = client.get_model_version(model, number)
            run = client.get_run(version.run_id)
            what = f"registered model {version.name} version {version.version}"
        else:
            run = client.get_run(ref)
            what = f"run {ref}"
    except (MlflowException, ValueError) as e:
        raise PipelineError(f"--model {ref}: not found in {client.tracking_uri} ({str(e).splitlines()[0]})") from None
    parent_id = (
        run.info.run_id if run.data.tags.get(ROLE_TAG) == "pipeline" else run.data.tags.get("mlflow.parentRunId")
    )
    if not parent_id:
        raise PipelineError(f"--model {ref}: run {run.info.run_id} is not a run of this pipeline")
    parent = client.get_run(parent_id)
    return parent_id, f"{what}, pipeline run '{parent.info.run_name}' ({parent_id})"


def download_models(client, parent_id: str, folder) -> dict:
    """Download the stage-1, stage-2 and mixture checkpoints logged by the stage runs of
    pipeline run ``parent_id`` into ``folder``; returns {file name: path}."""
    from pipeline.tracking.runs import STAGE_TAG

    children = client.search_runs(
        [client.get_run(parent_id).info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'", max_results=100
    )
    latest = {}
    for c in sorted(children, key=lambda c: c.info.start_time):  # a stage run again: its latest run
        latest[c.data.tags.get(STAGE_TAG)] = c
    paths = {}
    for stage, files in (("train_vae", ("vae.pt",)), ("train_stage2", ("stage2.pt", "gmm.pt"))):
        if stage not in latest:
            raise PipelineError(f"pipeline run {parent_id} has no {stage} run: its models cannot be loaded")
        for f in files:
            paths[f] = client.download_artifacts(latest[stage].info.run_id, f"model/{f}", str(folder))
    return paths
