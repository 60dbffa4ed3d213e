"""`bvae ui`: the MLflow UI on the project's store, at the address of its runs."""

import os
import socket
import sys
from pathlib import Path

import click

from pipeline import PipelineError
from pipeline.tracking.store import experiment_name, is_server, tracking_uri
from stages.command import command


@click.command(name="ui")
@click.option("--port", default=5000, show_default=True, help="Port of the UI.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (0.0.0.0: all).")
@click.option("--address", "address_only", is_flag=True, help="Print the address of the runs and exit.")
@command
def main(port, host, address_only):
    """Open the project's runs in the MLflow UI.

    Starts `mlflow ui` on the project's store (mlflow.db at the repository root, or the
    sqlite file MLFLOW_TRACKING_URI names) and prints the address of the experiment's
    runs in MLflow's "Model training" view: one parent run per configuration, its stage
    runs, grids, models and metrics. Ctrl-C stops it. With MLFLOW_TRACKING_URI naming a
    tracking server, prints the address on that server (it serves the UI already).
    """
    uri = tracking_uri()
    experiment = find_experiment_id(uri)
    if is_server(uri):
        click.echo(ui_address(uri, experiment))
        return
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    if address_only:
        click.echo(ui_address(base, experiment))
        return
    if experiment is None:
        raise PipelineError(f"no runs in {uri} yet: run the pipeline first (bash scripts/repro.sh)")
    with socket.socket() as probe:
        if probe.connect_ex((host if host not in ("0.0.0.0", "::") else "127.0.0.1", port)) == 0:
            raise PipelineError(f"port {port} is in use (another mlflow ui?): stop it or choose another with --port")
    click.echo(f"MLflow UI on {uri}: open {ui_address(base, experiment)}   (Ctrl-C stops it)", err=True)
    sys.stdout.flush()
    # The UI replaces this process (no process of ours left beside it): Ctrl-C reaches it directly.
    # Without the job runner and its 7 queue consumers (MLflow's GenAI jobs; nothing here uses them).
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    os.execv(sys.executable, command)


def ui_address(base: str, experiment_id: str | None) -> str:
    """The address of the experiment's runs in MLflow's "Model training" view. MLflow 3's UI
    reads ``workflowType`` from the address (its JS, the workflow-type context); without it
    a fresh browser opens the experiment on the GenAI views (traces, judges, prompts)."""
    where = f"experiments/{experiment_id}/runs" if experiment_id else "experiments"
    return f"{base.rstrip('/')}/#/{where}?workflowType=machine_learning"


def find_experiment_id(uri: str) -> str | None:
    """The id of the experiment :func:`experiment_name` in the store ``uri`` (None when it is
    not there yet), read without importing MLflow: a query of a sqlite store's ``experiments``
    table, or one request to a tracking server's REST API."""
    import json
    import sqlite3
    import urllib.error
    import urllib.parse
    import urllib.request

    name = experiment_name()
    if is_server(uri):
        query = urllib.parse.urlencode({"experiment_name": name})
        try:
            with urllib.request.urlopen(
                f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/get-by-name?{query}", timeout=10
            ) as r:
                return json.load(r)["experiment"]["experiment_id"]
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise PipelineError(f"MLflow tracking server {uri} answered {e.code} for experiment {name!r}") from None
        except (OSError, ValueError) as e:
            raise PipelineError(f"MLflow tracking server {uri} is unreachable ({e})") from None
    if not uri.startswith("sqlite:///"):
        raise PipelineError(
            f"MLFLOW_TRACKING_URI={uri}: only a sqlite file or a tracking server can be opened in the UI"
        )
    path = Path(uri[len("sqlite:///") :])
    if not path.is_file():
        return None
    try:
        with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as db:
            row = db.execute(
                "SELECT experiment_id FROM experiments WHERE name = ? AND lifecycle_stage = 'active'", (name,)
            ).fetchone()
    except sqlite3.Error as e:
        raise PipelineError(f"{path} is not a readable MLflow store ({e})") from None
    return str(row[0]) if row else None


if __name__ == "__main__":
    main()
