"""`bvae ui`: the address of the experiment's runs in MLflow's "Model training" view, read from a
real store, and one clear line when there is nothing to open or the port is taken."""

import socket

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from bvae import cli
from bvae.ui import find_experiment_id, ui_address
from conftest import free_port
from pipeline.tracking.runs import experiment_id

pytestmark = pytest.mark.quick  # unit tests: no pipeline run (`pytest -m quick`, the edit-test loop)


def test_the_address_names_the_runs_in_the_model_training_view():
    # MLflow 3.17's UI reads workflowType from the address (server/js, the workflow-type context)
    assert ui_address("http://127.0.0.1:5000/", "7") == (
        "http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"
    )
    assert ui_address("http://h:5000", None) == "http://h:5000/#/experiments?workflowType=machine_learning"


def test_the_experiment_id_is_read_from_a_real_sqlite_store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert find_experiment_id(uri) is None  # no store yet
    client = MlflowClient(uri)
    client.create_experiment("other")
    made = experiment_id(client, (tmp_path / "mlartifacts").as_uri())  # as the stages make it
    assert find_experiment_id(uri) == made != "0"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "other")
    assert find_experiment_id(uri) == client.get_experiment_by_name("other").experiment_id


def test_bvae_ui_prints_the_address_and_says_what_is_missing(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    ui = lambda *args: CliRunner().invoke(cli.main, ["ui", *args])
    out = ui()
    assert out.exit_code == 2
    assert out.output.strip() == f"error: no runs in {uri} yet: run the pipeline first (bash scripts/repro.sh)"
    experiment_id(MlflowClient(uri), (tmp_path / "mlartifacts").as_uri())
    out = ui("--address", "--port", "5077")
    assert out.output.strip() == "http://127.0.0.1:5077/#/experiments/1/runs?workflowType=machine_learning"
    with socket.socket() as taken:  # another UI on the port: said before mlflow starts
        port = free_port()
        taken.bind(("127.0.0.1", port))
        taken.listen(1)
        out = ui("--port", str(port))
    assert out.exit_code == 2 and f"port {port} is in use" in out.output and "Traceback" not in out.output
