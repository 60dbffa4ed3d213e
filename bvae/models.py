"""The trained models `bvae sample` and `bvae interpolate` use: the workspace's models/ (what
the last `dvc repro` wrote), or those of the pipeline run that ``--model`` names, by a
registered version (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``) or a run id."""

import os
from pathlib import Path

import click

from pipeline import PipelineError
from pipeline.tracking.runs import ROLE_TAG, STAGE_TAG


def trained_models(device, model_ref: str | None):
    """(stage-1 VAE, stage-2 checkpoint, stage-2 VAE, mixture): from the workspace's models/
    (what the last `dvc repro` wrote), or from the pipeline run that ``model_ref`` names
    (:func:`resolve`). Says which."""
    import tempfile

    from pipeline.models import stage1_from_checkpoint, stage2_from_checkpoint
    from stages.layout import GMM, STAGE2, VAE
    from stages.runtime import load_checkpoint

    paths = {"vae.pt": VAE, "stage2.pt": STAGE2, "gmm.pt": GMM}
    with tempfile.TemporaryDirectory() as folder:
        if model_ref:
            from mlflow import MlflowClient

            from pipeline.tracking.store import check_reachable, tracking_uri

            check_reachable(tracking_uri())
            os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # three small files
            client = MlflowClient(tracking_uri())
            parent_id, what = resolve(client, model_ref)
            paths = {k: Path(v) for k, v in download_models(client, parent_id, folder).items()}
            click.echo(f"models: {what}")
        else:
            click.echo(
                f"models: the workspace's {VAE.parent}/ (the last dvc repro; --model models:/NAME@ALIAS or a run "
                "id for a registered or logged one)"
            )
        s2 = load_checkpoint(paths["stage2.pt"], "stage-2 model")
        return (
            stage1_from_checkpoint(load_checkpoint(paths["vae.pt"], "stage-1 model")).to(device),
            s2,
            stage2_from_checkpoint(s2).to(device),
            load_checkpoint(paths["gmm.pt"], "Gaussian mixture"),
        )


def resolve(client, ref: str) -> tuple[str, str]:
    """The parent (pipeline) run of ``ref`` and a sentence saying what ``ref`` is. ``ref``:
    ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, or the id of a pipeline run or of
    one of its stage runs."""
    from mlflow.exceptions import MlflowException

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
