"""Data-parallel training with the real torchrun and gloo on CPU: 2 processes match 1 with
the same global batch, only rank 0 writes and logs, and a killed DDP run resumes."""

import json
import signal

import pytest
from mlflow import MlflowClient
from test_faults import checkpoint_epoch, start_and_stop

from conftest import TINY, make_project, merge, run

pytestmark = pytest.mark.heavy  # end-to-end runs of the real DVC pipeline (`pytest -m heavy`; CI runs them)

PARAMS = merge(TINY, {"prepare": {"limit_train": None}, "train": {"epochs": 3}})  # 1,293 training digits, batch 64


@pytest.mark.slow  # about a minute (two gloo ranks and torchrun): `bash scripts/test.sh -m slow`
def test_two_gloo_processes_match_one_and_resume_after_a_kill(tmp_path):
    project = make_project(tmp_path, PARAMS)
    run(["dvc", "repro", "prepare"], project)
    run(["python", "-m", "stages.train_vae"], project, BVAE_TRACKING="off")
    one = json.loads((project / "metrics/all/train_vae.json").read_text())

    out = run(["python", "-m", "stages.train_vae"], project, BVAE_NPROC="2")
    assert "torchrun --standalone --nproc_per_node=2 -m stages.train_vae" in out.stdout
    assert "rank 1 of 2" in out.stdout
    two = json.loads((project / "metrics/all/train_vae.json").read_text())
    # Same global batch: gamma follows the batch MSE averaged over the ranks. BatchNorm statistics are
    # per rank on CPU (half batches), so the runs differ slightly: gamma within 2 %, loss within 5 %.
    assert two["final_gamma"] == pytest.approx(one["final_gamma"], rel=0.02)
    assert two["final_loss"] == pytest.approx(one["final_loss"], rel=0.05)
    assert two["final_mse"] == pytest.approx(one["final_mse"], rel=0.1)

    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    exp = client.get_experiment_by_name("balanced-vae")
    stage_runs = client.search_runs([exp.experiment_id], "tags.`bvae.stage` = 'train_vae'")
    assert (
        len(stage_runs) == 1 and stage_runs[0].info.status == "FINISHED"
    )  # rank 0 only (the 1-process run was offline)
    assert len(client.get_metric_history(stage_runs[0].info.run_id, "train_vae/loss")) == PARAMS["train"]["epochs"]

    proc = start_and_stop(
        project,
        ["python", "-m", "stages.train_vae"],
        signal.SIGKILL,
        after_epoch=2,
        BVAE_NPROC="2",
        BVAE_TRACKING="off",
    )
    assert proc.returncode == -signal.SIGKILL and checkpoint_epoch(project) >= 2
    out = run(["python", "-m", "stages.train_vae"], project, BVAE_NPROC="2", BVAE_TRACKING="off")
    assert "train_vae: resuming from checkpoints/train_vae.pt after epoch" in out.stdout
    assert json.loads((project / "metrics/all/train_vae.json").read_text()) == two  # gloo on CPU is deterministic


@pytest.mark.parametrize("arch", [pytest.param("resnet_ref", marks=pytest.mark.slow), "infogan"])
def test_reference_archs_train_data_parallel(tmp_path, arch):
    project = make_project(
        tmp_path,
        merge(
            TINY, {"train": {"epochs": 2, "model": {"arch": arch, "base_channels": 8, "num_scale": 2, "fc_width": 32}}}
        ),
    )
    run(["dvc", "repro", "prepare"], project)
    out = run(["python", "-m", "stages.train_vae"], project, BVAE_NPROC="2", BVAE_TRACKING="off")
    assert "rank 1 of 2" in out.stdout
    metrics = json.loads((project / "metrics/all/train_vae.json").read_text())
    assert metrics["final_gamma"] < 1 and metrics["test_mse"] < 0.2
