"""Parallel sweeps against a real MLflow tracking server: 4 queued DVC experiments, 2 workers,
started with scripts/tracking_server.sh; every run lands with its own params and metrics.
Slow (about 5 minutes on 2 cores): `bash scripts/test.sh -m slow`."""

import pytest
from mlflow import MlflowClient

from conftest import TINY, free_port, make_project, queued_names, run, wait_for_queue

pytestmark = pytest.mark.heavy  # end-to-end runs of the real DVC pipeline (`pytest -m heavy`; CI runs them)


@pytest.mark.slow
def test_four_queued_experiments_on_two_workers_all_land_in_the_server(tmp_path):
    project = make_project(tmp_path, TINY)
    (project / ".venv").symlink_to(run(["python", "-c", "import sys; print(sys.prefix)"], project).stdout.strip())
    port = free_port()
    out = run(["bash", "scripts/tracking_server.sh"], project, PORT=str(port)).stdout
    uri = f"http://127.0.0.1:{port}"
    assert f"export MLFLOW_TRACKING_URI={uri}" in out
    try:
        seeds = [1, 2, 3, 4]
        names = []
        for seed in seeds:
            said = run(["dvc", "exp", "run", "--queue", "-S", f"train.seed={seed}"], project, MLFLOW_TRACKING_URI=uri)
            names += queued_names(said.stdout)
        run(["dvc", "queue", "start", "-j", "2"], project, MLFLOW_TRACKING_URI=uri)
        status = wait_for_queue(project, names, 1200)
        assert [status[n] for n in names] == ["Success"] * 4, status
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("balanced-vae")
        parents = client.search_runs([exp.experiment_id], "tags.`bvae.role` = 'pipeline'")
        assert sorted(int(p.data.params["train.seed"]) for p in parents) == seeds  # none lost, none merged
        for parent in parents:
            assert parent.info.status == "FINISHED" and "fid_domain_gen2" in parent.data.metrics
            children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
            assert sorted(c.info.run_name for c in children) == sorted(
                f"{s} · {parent.info.run_name}"
                for s in ["prepare", "reference", "train_vae", "train_stage2", "evaluate"]
            )
            seed = parent.data.params["train.seed"]
            train = next(c for c in children if c.data.tags["bvae.stage"] == "train_vae")
            assert train.data.params["train.seed"] == seed  # no mixed-up runs
    finally:
        run(["bash", "scripts/tracking_server.sh", "stop"], project, check=False)
