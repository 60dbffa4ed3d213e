"""A clean copy of the project reproduces its commit: `dvc repro` of the committed params
rewrites every output with the same bytes, so `git status` shows nothing modified and
the committed metrics are the ones a user gets."""

import json
import subprocess

import pytest
import torch

from conftest import ROOT, make_project, run
from pipeline.speed import bf16_native


def test_a_clean_copy_reproduces_the_committed_outputs(tmp_path):
    committed = json.loads((ROOT / "metrics/all/train_vae.json").read_text())["bf16_autocast"]
    if bool(committed) != bf16_native(torch.device("cpu")):  # precision: auto follows the CPU (README "Reproducing")
        pytest.skip(f"the committed metrics ran {'with' if committed else 'without'} bf16 autocast; this CPU "
                    f"{'lacks' if committed else 'has'} native bf16")  # fmt: skip
    project = make_project(tmp_path, {})
    # 2 threads, as the committed run had on its 2 CPUs: the thread count changes float summation order
    run(["dvc", "repro", "--force"], project, BVAE_THREADS="2")
    changed = subprocess.run(["git", "status", "--porcelain"], cwd=project, capture_output=True, text=True).stdout
    assert changed == "", changed
    assert "source" in json.loads((project / "data/prepared/meta.json").read_text())
    assert str(tmp_path) not in (project / "data/prepared/meta.json").read_text()  # nothing depends on the location
