"""`bvae ui`: the MLflow UI on the project's store, at the address of its runs."""

import os
import socket
import sys

import click

from stages.command import stage


@click.command(name="ui")
@click.option("--port", default=5000, show_default=True, help="Port of the UI.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (0.0.0.0: all).")
@click.option("--address", "address_only", is_flag=True, help="Print the address of the runs and exit.")
@stage
def main(port, host, address_only):
    """Open the project's runs in the MLflow UI.

    Starts `mlflow ui` on the project's store (mlflow.db at the repository root, or the
    sqlite file MLFLOW_TRACKING_URI names) and prints the address of the experiment's
    runs in MLflow's "Model training" view: one parent run per configuration, its stage
    runs, grids, models and metrics. Ctrl-C stops it. With MLFLOW_TRACKING_URI naming a
    tracking server, prints the address on that server (it serves the UI already).
    """
    from pipeline import PipelineError
    from pipeline.tracking.store import find_experiment_id, is_server, tracking_uri, ui_address

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


if __name__ == "__main__":
    main()
