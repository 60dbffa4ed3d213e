"""Feature spaces, Frechet distance, Inception weights handling, MLflow store location."""

import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from pipeline import PipelineError
from pipeline.evaluation.features import (
    INCEPTION_FILE,
    InceptionFeatures,
    frechet_distance,
    resolve_inception_weights,
    statistics,
)
from pipeline.tracking.store import repo_root

pytestmark = pytest.mark.quick  # unit tests: no pipeline run (`pytest -m quick`, the edit-test loop)


def test_frechet_distance_zero_on_itself_and_grows_with_noise():
    torch.manual_seed(0)
    feats = torch.randn(500, 8, dtype=torch.float64)
    ref = statistics(feats)
    assert abs(frechet_distance(statistics(feats), ref)) < 1e-6
    fids = [frechet_distance(statistics(feats + s * torch.randn_like(feats)), ref) for s in (0.1, 0.5, 1.0)]
    assert fids[0] < fids[1] < fids[2]


def test_frechet_distance_of_shifted_gaussian():
    torch.manual_seed(0)
    feats = torch.randn(20000, 2, dtype=torch.float64)
    # same covariance, mean shifted by (3, 4): FID ~ |shift|^2 = 25
    assert frechet_distance(statistics(feats + torch.tensor([3.0, 4.0], dtype=torch.float64)), statistics(feats)) == (
        pytest.approx(25, abs=0.2)
    )


def test_inception_path_with_random_weights(random_inception_weights):
    space = InceptionFeatures(resolve_inception_weights(str(random_inception_weights)), torch.device("cpu"))
    grey = (torch.rand(3, 1, 8, 8) * 255).to(torch.uint8)
    feats = space.extract(grey)
    assert feats.shape == (3, 2048) and feats.dtype == torch.float64 and torch.isfinite(feats).all()


def test_missing_inception_weights_offline_is_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("BVAE_OFFLINE", "1")
    with pytest.raises(PipelineError) as err:
        resolve_inception_weights(None)
    msg = str(err.value)
    assert INCEPTION_FILE in msg and str(tmp_path / "hub" / "checkpoints" / INCEPTION_FILE) in msg
    with pytest.raises(PipelineError, match="file not found"):
        resolve_inception_weights(str(tmp_path / "nope.pth"))


def test_inception_weights_found_in_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = tmp_path / "hub" / "checkpoints" / INCEPTION_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    assert resolve_inception_weights(None) == str(path)


def test_repo_root_inside_dvc_experiment_copies(tmp_path):
    assert repo_root(tmp_path) == tmp_path
    inner = tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc123"
    inner.mkdir(parents=True)
    assert repo_root(inner) == tmp_path


def test_every_command_explains_itself():
    from click.testing import CliRunner

    from bvae.cli import main

    runner = CliRunner()
    for name in ("prepare", "reference", "train-vae", "train-stage2", "evaluate", "compare"):
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0 and len(result.output.split()) > 30, name


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        *[
            [name, "--help"]
            for name in (
                "prepare",
                "reference",
                "train-vae",
                "train-stage2",
                "evaluate",
                "sample",
                "interpolate",
                "compare",
                "preset",
            )
        ],
    ],
)
def test_help_imports_neither_torch_nor_mlflow(args):
    """`--help` starts in a fraction of a second: torch and MLflow are imported by the work, not the command."""
    code = (
        f"import sys\nfrom bvae.cli import main\ntry:\n    main({args!r})\nexcept SystemExit as e:\n"
        "    assert e.code in (0, None)\nprint(sorted(m for m in ('torch', 'mlflow', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_stage_errors_are_one_line_and_exit_2(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from bvae.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(
        "prepare: {dataset: cifar99, data_root: x, image_size: null, test_fraction: 0.2, seed: 0}\n"
    )
    result = CliRunner().invoke(main, ["prepare"], env={"BVAE_TRACKING": "off"})
    assert result.exit_code == 2 and "prepare.dataset: 'cifar99' is not one of" in result.output
    result = CliRunner().invoke(main, ["train-vae", "--params", "missing.yaml"])
    assert result.exit_code == 2 and "params file not found: missing.yaml" in result.output
