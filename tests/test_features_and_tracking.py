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


@pytest.mark.parametrize("mapping", ["torch-fidelity", "asperti"])
def test_inception_sees_each_references_pixel_mapping(random_inception_weights, mapping):
    """What Inception's first convolution receives. asperti: BalancingVAE fid.py:54 feeds
    ``inps * 2 - 1`` of images in [0, 1] (x = p / 255), resized bilinearly by tf.image.resize_bilinear
    (fid.py:36); torch-fidelity: its graph's (p - 128) / 128 (feature_extractor_inceptionv3.py:119)."""
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    space = InceptionFeatures(str(random_inception_weights), torch.device("cpu"), mapping)
    seen = []
    space.model.Conv2d_1a_3x3.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    p = torch.randint(0, 256, (2, 3, 20, 20), dtype=torch.uint8)
    space.extract(p)
    x = p.double() / 255 * 2 - 1 if mapping == "asperti" else (p.double() - 128) / 128  # in float64, as a reference
    expected = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
    assert seen[0].shape == (2, 3, 299, 299)
    assert (seen[0].double() - expected).abs().max() < 1e-5  # float32 resizing; the mappings differ by up to 1/128
    assert space.same_as_reference == (mapping == "torch-fidelity")


def test_the_two_inception_mappings_differ_by_a_half_grey_level():
    """(p - 127.5) / 127.5 against (p - 128) / 128: the same at p = 0 (both -1), apart by
    p / 32640 above it: 1/128 at p = 255 (1 against 127/128), about half a grey level."""
    from pipeline.evaluation.features import asperti_input

    p = torch.tensor([0.0, 128.0, 255.0])
    (asperti,) = asperti_input(None, ((p - 128) / 128,))
    assert torch.allclose(asperti, p / 127.5 - 1)
    assert torch.allclose(asperti - (p - 128) / 128, torch.tensor([0.0, 128 / 32640, 1 / 128]), atol=1e-6)


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
