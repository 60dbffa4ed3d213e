"""MLflow models: a torch module logged as an MLflow model, and the model registry: every
evaluate registers its generator (the sampler it chose, :mod:`pipeline.models.generator`)
as a new version of ``evaluate.register.name``, tagged and described; ``alias`` follows the
latest version, ``champion`` only to a lower FID of the same feature space, protocol, data
and floor (the rules and tags: docs/tracking.md, "Models and the registry")."""

import logging
from pathlib import Path

SCORE_TAG = "bvae.score"  # the metric an alias compares (fid_<space>_gen2)
DATASET_TAG = "bvae.dataset"
PARENT_TAG = "bvae.parent_run_id"
SAMPLER_TAG = "bvae.sampler"  # the registered generator's sampler (gen2, gmm, ...)
CHOICE_TAG = "bvae.sampler_choice"  # how evaluate chose it


def log_model(client, model, name: str, example, parent_id: str | None, exp_id: str, tags: dict | None) -> str:
    """Log the torch module ``model`` as an MLflow model of the active run and return its id:
    pickled with this package's code bundled (``code_paths``), so ``mlflow.pytorch.load_model``
    loads it wherever torch is installed (MLflow's warning about pickle is therefore
    silenced); its signature from ``example``. With ``parent_id`` the parent run is the
    model's source run (the UI's Models column lists a model by its source run) and lists
    it among its outputs; ``tags`` on the logged model."""
    import mlflow
    import mlflow.pytorch
    import torch
    from mlflow.entities import LoggedModelOutput
    from mlflow.models import infer_signature

    with torch.no_grad():
        out = model(example)
    logged = parent_id and mlflow.initialize_logged_model(name, parent_id, tags, experiment_id=exp_id)
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)  # its warning about pickle (the code is bundled)
    info = mlflow.pytorch.log_model(
        model,
        name=name,
        signature=infer_signature(example.cpu().numpy(), out.cpu().numpy()),
        input_example=example.cpu().numpy(),
        serialization_format="pickle",
        code_paths=[str(Path(__file__).parents[1])],  # the pipeline package
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        model_id=logged.model_id if logged else None,
        tags=None if logged else tags,
    )
    if parent_id:
        client.log_outputs(parent_id, [LoggedModelOutput(info.model_id, 0)])
    return info.model_id


def register(
    client, settings: dict, model_id: str, parent_id: str | None, metrics: dict, score: str, about: dict
) -> str:
    """Register the logged model ``model_id`` as a new version of ``settings["name"]`` (source:
    the parent run ``parent_id``); point ``settings["alias"]`` at it and move
    ``settings["champion"]`` to it if its ``score`` is the best. Returns what happened, in a line."""
    from mlflow.exceptions import MlflowException

    name = settings["name"]
    try:
        client.create_registered_model(name)
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":  # or registered meanwhile by a parallel evaluate
            raise
    version = str(client.create_model_version(name, f"models:/{model_id}", run_id=parent_id, model_id=model_id).version)
    tags = describe_version(client, name, version, metrics, parent_id, score, about)
    said = [f"registered model {name} version {version}"]
    if settings.get("alias"):
        client.set_registered_model_alias(name, settings["alias"], version)
        said.append(f"@{settings['alias']} -> version {version}")
    if settings.get("champion"):
        said.append(promote(client, name, version, tags, settings["champion"]))
    return "; ".join(said)


def describe_version(
    client, name: str, version: str, metrics: dict, parent_id: str | None, score: str, about: dict
) -> dict:
    """Tag version ``version`` with ``metrics``, the metric aliases compare, ``about`` and its
    parent run's name, balance and dataset; describe it by its sampler's choice, the parent's
    description and its metrics. Returns the tags."""
    from pipeline.tracking.runs import BALANCE_TAG

    tags = {k: f"{v:.6g}" for k, v in metrics.items()} | {SCORE_TAG: score} | about
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
    chosen = f"Generator: sampler {about[CHOICE_TAG]}." if CHOICE_TAG in about else ""
    text = "\n\n".join(t for t in (chosen, note, f"Metrics: {shown}.") if t)
    client.update_model_version(name, version, description=text)
    return tags


def promote(client, name: str, version: str, tags: dict, champion: str) -> str:
    """Point ``champion`` at ``version`` if its score beats the holder's; returns what happened."""
    from mlflow.exceptions import MlflowException

    score = tags[SCORE_TAG]
    if score not in tags:
        return f"@{champion} not moved: this run has no {score} (no sampler was scored: evaluate.samplers is empty)"
    try:
        holder = client.get_model_version_by_alias(name, champion)
    except MlflowException:
        holder = None
    if holder is None:
        client.set_registered_model_alias(name, champion, version)
        return f"@{champion} -> version {version} (the first, {score} {tags[score]})"
    old, new = holder.tags.get(score), float(tags[score])
    if old is None and SAMPLER_TAG not in holder.tags:  # registered before the choice of sampler: a GEN-2 generator
        old = holder.tags.get(score.removesuffix("_generator") + "_gen2")
    floor = next((k for k in tags if k.endswith("_train_vs_test")), "")  # same test images and features: same floor
    if old is None or any(holder.tags.get(k, tags.get(k)) != tags.get(k) for k in (DATASET_TAG, floor)):
        return (
            f"@{champion} stays at version {holder.version}: it was scored on other data or in another feature "
            f"space (its {holder.tags.get(DATASET_TAG, '?')}, {score} {old}, {floor} {holder.tags.get(floor)}); use a new "
            "evaluate.register.name for new data or features, or move the alias in the MLflow UI"
        )
    if new < float(old):
        client.set_registered_model_alias(name, champion, version)
        return f"@{champion} -> version {version} ({score} {new:.6g} beats version {holder.version}'s {old})"
    return f"@{champion} stays at version {holder.version} ({score} {old}; this version's {new:.6g} is not lower)"
