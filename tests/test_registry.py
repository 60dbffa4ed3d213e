"""The model registry on a real MLflow sqlite store: the champion alias moves only on a
better generator FID of the same data and feature space; --model references resolve to the
pipeline run that made the model."""

import pytest
from mlflow import MlflowClient

from bvae import models as registry_models
from pipeline import PipelineError
from pipeline.tracking import registry
from pipeline.tracking.runs import BALANCE_TAG, ROLE_TAG, STAGE_TAG

pytestmark = pytest.mark.quick  # unit tests: no pipeline run (`pytest -m quick`, the edit-test loop)

NAME = "gen"


@pytest.fixture
def client(tmp_path):
    c = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    c.create_registered_model(NAME)
    return c


def pipeline_run(client, dataset: str = "digits") -> tuple[str, str]:
    """A parent run and its evaluate run, tagged as the pipeline tags them; returns their ids."""
    exp = client.get_experiment_by_name("Default").experiment_id
    parent = client.create_run(
        exp,
        run_name="p",
        tags={ROLE_TAG: "pipeline", BALANCE_TAG: "fixed beta=0.1", "mlflow.note.content": "what differs"},
    )
    client.log_param(parent.info.run_id, "prepare.dataset", dataset)
    child = client.create_run(
        exp,
        run_name="evaluate · p",
        tags={ROLE_TAG: "stage", STAGE_TAG: "evaluate", "mlflow.parentRunId": parent.info.run_id},
    )
    return parent.info.run_id, child.info.run_id


def new_version(
    client, fid: float | None, dataset: str = "digits", space: str = "domain", floor: float = 2.5
) -> tuple[str, dict]:
    score = f"fid_{space}_generator"
    parent, child = pipeline_run(client, dataset)
    version = client.create_model_version(NAME, "file:///nowhere", run_id=child).version
    metrics = ({} if fid is None else {score: fid}) | {f"fid_{space}_train_vs_test": floor}
    about = {registry.SAMPLER_TAG: "gmm", registry.CHOICE_TAG: "gmm: the lowest FID against training images (...)"}
    return str(version), registry.describe_version(client, NAME, str(version), metrics, parent, score, about)


def test_champion_moves_only_on_a_lower_fid_of_the_same_data_and_feature_space(client):
    v1, tags = new_version(client, 10.0)
    assert tags[BALANCE_TAG] == "fixed beta=0.1" and tags["fid_domain_generator"] == "10"
    assert tags[registry.SAMPLER_TAG] == "gmm"
    assert client.get_model_version(NAME, v1).description == (
        "Generator: sampler gmm: the lowest FID against training images (...).\n\n"
        "what differs\n\nMetrics: fid_domain_generator 10, fid_domain_train_vs_test 2.5."
    )
    assert registry.promote(client, NAME, v1, tags, "champion") == (
        "@champion -> version 1 (the first, fid_domain_generator 10)"
    )
    v2, tags = new_version(client, 12.5)
    assert "stays at version 1" in registry.promote(client, NAME, v2, tags, "champion")
    v3, tags = new_version(client, 8.25)
    assert registry.promote(client, NAME, v3, tags, "champion") == (
        "@champion -> version 3 (fid_domain_generator 8.25 beats version 1's 10)"
    )
    v4, tags = new_version(client, 1.0, dataset="mnist")  # another data set: FIDs not comparable
    assert "stays at version 3: it was scored on other data" in registry.promote(client, NAME, v4, tags, "champion")
    v5, tags = new_version(client, 1.0, space="inception")  # another feature space: the holder has no such FID
    assert "(its digits, fid_inception_generator None, " in registry.promote(client, NAME, v5, tags, "champion")
    v6, tags = new_version(client, 1.0, floor=4.25)  # other test images or classifier (prepare, reference params)
    assert registry.promote(client, NAME, v6, tags, "champion") == (
        "@champion stays at version 3: it was scored on other data or in another feature space (its digits, "
        "fid_domain_generator 8.25, fid_domain_train_vs_test 2.5); use a new evaluate.register.name for new data or "
        "features, or move the alias in the MLflow UI"
    )
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == v3


def test_model_references_resolve_to_the_pipeline_run(client):
    v1, tags = new_version(client, 10.0)
    registry.promote(client, NAME, v1, tags, "champion")
    parent = tags[registry.PARENT_TAG]
    evaluate = client.get_model_version(NAME, v1).run_id
    for ref in (f"models:/{NAME}@champion", f"models:/{NAME}/1", parent, evaluate):
        found, what = registry_models.resolve(client, ref)
        assert found == parent and f"pipeline run 'p' ({parent})" in what, ref
    assert registry_models.resolve(client, f"models:/{NAME}@champion")[1].startswith(
        f"registered model {NAME} version 1"
    )
    for ref in (f"models:/{NAME}@nobody", "0123456789abcdef", f"models:/{NAME}/9"):
        with pytest.raises(PipelineError, match="not found in sqlite"):
            registry_models.resolve(client, ref)


def test_a_champion_registered_before_the_sampler_choice_is_compared_by_its_gen2_fid(client):
    parent, child = pipeline_run(client)
    old = str(client.create_model_version(NAME, "file:///nowhere", run_id=child).version)
    tags = registry.describe_version(client, NAME, old, {"fid_domain_gen2": 10.0}, parent, "fid_domain_gen2", {})
    registry.promote(client, NAME, old, tags, "champion")  # an earlier release's version: GEN-2, no bvae.sampler
    v2, tags = new_version(client, 12.0)
    assert registry.promote(client, NAME, v2, tags, "champion") == (
        "@champion stays at version 1 (fid_domain_generator 10; this version's 12 is not lower)"
    )
    v3, tags = new_version(client, 8.0)
    assert registry.promote(client, NAME, v3, tags, "champion") == (
        "@champion -> version 3 (fid_domain_generator 8 beats version 1's 10)"
    )
