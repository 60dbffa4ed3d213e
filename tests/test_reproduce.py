"""A clean copy of the project reproduces its commit: the README's `bash scripts/repro.sh`
rewrites every output with the same bytes, so `git status` shows nothing modified and
the committed metrics are the ones a user gets; and the new MLflow store holds the
whole pipeline."""

import json
import subprocess

import pytest
import torch
from mlflow import MlflowClient

from conftest import ROOT, make_project, run
from pipeline.speed import bf16_native


def test_a_clean_copy_reproduces_the_committed_outputs(tmp_path):
    committed = json.loads((ROOT / "metrics/all/train_vae.json").read_text())["bf16_autocast"]
    if bool(committed) != bf16_native(torch.device("cpu")):  # precision: auto follows the CPU (README "Reproducibility")
        pytest.skip(f"the committed metrics ran {'with' if committed else 'without'} bf16 autocast; this CPU "
                    f"{'lacks' if committed else 'has'} native bf16")  # fmt: skip
    project = make_project(tmp_path, {})
    (project / ".venv").symlink_to(ROOT / ".venv")  # setup.sh finds it installed
    # 2 threads, as the committed run had on its 2 CPUs: the thread count changes float summation order
    out = run(["bash", "scripts/repro.sh"], project, BVAE_THREADS="2").stdout
    assert out.count("Running stage") == 5  # a new store: every stage runs, evaluate included
    changed = subprocess.run(["git", "status", "--porcelain"], cwd=project, capture_output=True, text=True).stdout
    assert changed == "", changed
    assert str(tmp_path) not in (project / "data/prepared/meta.json").read_text()  # nothing depends on the location

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("balanced-vae")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`bvae.role` = 'pipeline'")
    metrics = json.loads((project / "metrics/evaluate.json").read_text())
    assert parent.info.status == "FINISHED" and parent.data.metrics["fid_domain_gen2"] == metrics["fid_domain_gen2"]
    champion = client.get_model_version_by_alias("balanced-vae-generator", "champion")
    assert champion.tags["fid_domain_gen2"] == f"{metrics['fid_domain_gen2']:.6g}"
