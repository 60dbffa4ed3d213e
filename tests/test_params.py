"""Bad params files: every one stops the stage before any work with one message naming the
key, exit code 2, and nothing written (no outputs, no MLflow store)."""

import pytest
import yaml
from click.testing import CliRunner

from conftest import ROOT, merge, run
from pipeline import PipelineError
from pipeline.config import schema
from stages import evaluate, prepare, train_stage2, train_vae

pytestmark = pytest.mark.quick  # unit tests: no pipeline run (`pytest -m quick`, the edit-test loop)

DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())


def drop(section: str, key: str) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    del params[section][key]
    return params


BAD = [  # (params or a mutation of the defaults, expected message)
    (merge(DEFAULT, {"trian": {"lr": 1}}), "unknown key trian (did you mean train?)"),
    (merge(DEFAULT, {"train": {"lrr": 0.1}}), "unknown key train.lrr (did you mean train.lr?)"),
    (drop("train", "epochs"), "missing key train.epochs"),
    (
        merge(DEFAULT, {"train": {"lr": "5e-5"}}),
        "train.lr: '5e-5' is read as a string (YAML 1.1); write it with a dot, e.g. 5.0e-5",
    ),
    (
        merge(DEFAULT, {"train": {"lr": "0.001"}}),
        "train.lr: '0.001' is in quotes, so YAML reads it as text; remove the quotes",
    ),
    (
        merge(DEFAULT, {"train": {"epochs": "40"}}),
        "train.epochs: '40' is in quotes, so YAML reads it as text; remove the quotes",
    ),
    (yaml.safe_dump(DEFAULT) + "train:\n  lr: 0.1\n", "params.yaml: the key 'train' appears twice, at lines"),
    (
        merge(DEFAULT, {"evaluate": {"samplers": ["GEN2"]}}),
        "evaluate.samplers: 'GEN2' is not one of gen1, gen2, gen2_noise, gmm (did you mean gen2?)",
    ),
    (merge(DEFAULT, {"train": {"lr": -0.1}}), "train.lr: -0.1 is out of range (must be > 0)"),
    (merge(DEFAULT, {"train": {"epochs": 0}}), "train.epochs: 0 is out of range (must be >= 1)"),
    (merge(DEFAULT, {"train": {"epochs": 2.5}}), "train.epochs: expected an integer or auto, got 2.5"),
    (merge(DEFAULT, {"train": {"batch_size": True}}), "train.batch_size: expected an integer, got True"),
    (
        merge(DEFAULT, {"prepare": {"dataset": "mnsit"}}),
        "prepare.dataset: 'mnsit' is not one of digits, mnist, fashion_mnist, cifar10, celeba, folder (did you mean mnist?)",
    ),
    (merge(DEFAULT, {"prepare": {"channels": 2}}), "prepare.channels: 2 is not one of 1, 3"),
    (merge(DEFAULT, {"prepare": {"test_fraction": 1.5}}), "prepare.test_fraction: 1.5 is out of range (must be < 1)"),
    (
        merge(DEFAULT, {"prepare": {"image_size": 30}}),
        "train.model.num_down: the image size 30 is not divisible by 2**2",
    ),
    (
        merge(DEFAULT, {"prepare": {"dataset": "mnist"}, "train": {"model": {"arch": "resnet", "num_scale": 4}}}),
        "train.model.num_scale: the image size 28 is not divisible by 2**(num_scale - 1) = 8",
    ),
    (
        merge(DEFAULT, {"train": {"model": {"arch": "transformer"}}}),
        "train.model.arch: 'transformer' is not one of conv, resnet, resnet_ref, infogan",
    ),
    (
        merge(DEFAULT, {"prepare": {"dataset": "mnist"}, "train": {"model": {"arch": "resnet_ref"}}}),
        "train.model.arch: resnet_ref needs a power-of-two image side (its decoder doubles from 2x2), not 28",
    ),
    (
        merge(DEFAULT, {"prepare": {"image_size": 30}, "train": {"model": {"arch": "infogan"}}}),
        "train.model.arch: infogan needs an image side divisible by 4, not 30",
    ),
    (
        merge(DEFAULT, {"evaluate": {"protocol": "asperty"}}),
        "evaluate.protocol: 'asperty' is not one of clean, dai_wipf, asperti (did you mean asperti?)",
    ),
    (merge(DEFAULT, {"evaluate": {"nll_samples": -1}}), "evaluate.nll_samples: -1 is out of range (must be >= 0)"),
    (merge(DEFAULT, {"prepare": {"jpeg_quality": 100}}), "prepare.jpeg_quality: 100 is out of range (must be <= 95)"),
    (
        merge(DEFAULT, {"train": {"checkpoint_every": 0}}),
        'train.checkpoint_every: expected a number of epochs (an integer >= 1) or seconds such as "30s", got 0',
    ),
    (merge(DEFAULT, {"stage2": {"checkpoint_every": "soon"}}), "stage2.checkpoint_every: expected a number of epochs"),
    (
        merge(DEFAULT, {"train": {"balance": {"strategy": "runing_gamma"}}}),
        "train.balance.strategy: 'runing_gamma' is not one of",
    ),
    (merge(DEFAULT, {"train": {"balance": {"strategy": "runing_gamma"}}}), "(did you mean running_gamma?)"),
    (
        merge(DEFAULT, {"train": {"balance": {"momentum": 1.0}}}),
        "train.balance.momentum: 1.0 is out of range (must be < 1)",
    ),
    (
        merge(DEFAULT, {"train": {"balance": {"min_clamp": "yes"}}}),
        "train.balance.min_clamp: expected true or false, got 'yes'",
    ),
    (merge(DEFAULT, {"stage2": {"balance": {"temperature": 1}}}), "unknown key stage2.balance.temperature"),
    (
        merge(DEFAULT, {"stage2": {"gmm": {"covariance": "diagonal"}}}),
        "stage2.gmm.covariance: 'diagonal' is not one of full, tied, diag, spherical (did you mean diag?)",
    ),
    (merge(DEFAULT, {"train": {"precision": "fp16"}}), "train.precision: 'fp16' is not one of auto, fp32, bf16"),
    (
        merge(DEFAULT, {"evaluate": {"samplers": ["gen3"]}}),
        "evaluate.samplers: 'gen3' is not one of gen1, gen2, gen2_noise, gmm (did you mean gen2?)",
    ),
    (merge(DEFAULT, {"evaluate": {"samplers": ["gen1", "gen1"]}}), "evaluate.samplers: lists an entry twice"),
    (
        merge(DEFAULT, {"evaluate": {"register": {"alias": "latest"}}}),
        "evaluate.register.alias: 'latest' is reserved by MLflow",
    ),
    (
        merge(DEFAULT, {"evaluate": {"register": {"champion": "Latest"}}}),
        "evaluate.register.champion: 'latest' is reserved by MLflow",
    ),
    (
        merge(DEFAULT, {"evaluate": {"register": {"alias": "v1"}}}),
        "evaluate.register.alias: 'v1' is reserved by MLflow for version numbers",
    ),
    (
        merge(DEFAULT, {"evaluate": {"register": {"name": "a/b:c"}}}),
        "evaluate.register.name: 'a/b:c' is not a valid MLflow model name",
    ),
    (merge(DEFAULT, {"train": {"seed": 5000000000}}), "train.seed: 5000000000 is out of range (must be <= 4294967295)"),
    (merge(DEFAULT, {"evaluate": {"num_samples": 2}}), "evaluate.num_samples: 2 is out of range (must be >= 4)"),
    (merge(DEFAULT, {"prepare": {"limit_test": 1}}), "prepare.limit_test: 1 is out of range (must be >= 4)"),
    (
        merge(DEFAULT, {"evaluate": {"register": {"champion": "Candidate"}}}),
        "evaluate.register.champion: the same alias as evaluate.register.alias ('candidate')",
    ),
    (
        merge(DEFAULT, {"prepare": {"dataset": "celeba"}, "reference": {"features": "domain"}}),
        "reference.features: domain needs class labels and celeba has none; use inception",
    ),
    (merge(DEFAULT, {"prepare": {"dataset": "folder"}}), "prepare.image_size: required for dataset folder"),
    (merge(DEFAULT, {"stage2": {"lr_halve_every": 0}}), "stage2.lr_halve_every: 0 is out of range (must be >= 1)"),
    (merge(DEFAULT, {"train": {"model": None}}), "train.model: expected a mapping of keys, got None"),
    (
        merge(DEFAULT, {"evaluate": {"num_samples": "all"}}),
        "evaluate.num_samples: expected an integer or null, got 'all'",
    ),
    (merge(DEFAULT, {"train": {"lr": float("nan")}}), "train.lr: expected a number, got nan"),
    ("train: [1, 2\n", "params.yaml is not valid YAML"),
    ("- just\n- a list\n", "params.yaml must be a mapping of sections"),
]


@pytest.mark.parametrize("stage", [prepare, train_vae, train_stage2, evaluate], ids=lambda m: m.__name__.split(".")[-1])
@pytest.mark.parametrize("params, message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_params_stop_every_stage_before_any_work(tmp_path, monkeypatch, stage, params, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    path = tmp_path / "params.yaml"
    path.write_text(params if isinstance(params, str) else yaml.safe_dump(params))
    result = CliRunner().invoke(stage.main, ["--params", str(path)])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")  # one line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written


def test_bad_params_in_a_real_process_exit_2(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(merge(DEFAULT, {"train": {"lrr": 0.1}})))
    proc = run(["python", "-m", "stages.train_vae", "--params", str(path)], tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: unknown key train.lrr (did you mean train.lr?)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_bad_params_are_reported_before_torch_is_imported(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(merge(DEFAULT, {"stage2": {"balance": {"strategy": "sigmoid"}}})))
    code = (
        "import sys\nfrom stages import train_stage2\ntry:\n"
        f"    train_stage2.main(['--params', {str(path)!r}], standalone_mode=False)\n"
        "except SystemExit as e:\n    print(e.code, 'torch' in sys.modules)"
    )
    proc = run(["python", "-c", code], ROOT)
    assert proc.stdout.split() == ["2", "False"]
    assert "error: stage2.balance.strategy: " in proc.stderr and "sigma" in proc.stderr


def test_the_torch_free_choices_match_the_registries():
    from pipeline import data, models
    from pipeline.balance import STRATEGIES
    from pipeline.config import choices

    assert sorted(models.ARCHITECTURES) == sorted(choices.ARCHITECTURES)
    assert sorted(data.SOURCES) == sorted(choices.DATASETS)
    assert sorted(STRATEGIES) == sorted(choices.STRATEGIES)
    for name, cls in STRATEGIES.items():  # each strategy is built from its params in choices, defaults included
        assert cls.Params is choices.STRATEGY_PARAMS[name]
        built = cls()
        assert {key: getattr(built, key) for key in choices.STRATEGIES[name]} == choices.STRATEGIES[name], name
        with pytest.raises(TypeError, match="unexpected keyword argument 'nonsense'"):
            cls(nonsense=1)
    for name, cls in models.ARCHITECTURES.items():  # each network too: its settings are its params in choices
        assert cls.Params is choices.ARCH_PARAMS[name]
        shapes = lambda m: [tuple(p.shape) for p in m.parameters()]
        default = shapes(cls(1, 16, 4))
        assert shapes(cls(1, 16, 4, **choices.ARCHITECTURES[name])) == default, name
        if "base_channels" in choices.ARCHITECTURES[name]:
            assert shapes(cls(1, 16, 4, base_channels=8)) != default, name
        with pytest.raises(TypeError, match="unexpected keyword argument 'nonsense'"):
            cls(1, 16, 4, nonsense=1)
    assert models.DenseVAE.Params is choices.DenseParams


def test_missing_params_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(prepare.main, ["--params", "nope.yaml"])
    assert result.exit_code == 2 and "params file not found: nope.yaml" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["mnist", "cifar10", "celeba", "quick"])
def test_presets_are_valid_params(name):
    from pipeline.config.schema import validate

    validate(merge(DEFAULT, yaml.safe_load((ROOT / "presets" / f"{name}.yaml").read_text())))


@pytest.mark.parametrize("kind", ["name", "alias"])
def test_registry_names_follow_mlflows_own_rules(kind):
    from mlflow.exceptions import MlflowException
    from mlflow.utils import validation

    def mlflow_accepts(value):
        try:
            if kind == "name":
                validation._validate_model_name(value)
            else:
                validation._validate_model_alias_name(value)
                validation._validate_model_alias_name_reserved(value)
        except MlflowException:
            return False
        return True

    def ours_accepts(value):
        register = {"name": "m", "alias": "a", "champion": "c"} | {kind: value}
        try:
            schema._check_registry_names(register)
        except PipelineError:
            return False
        return True

    for value in (
        "balanced-vae-generator",
        "a/b",
        "a:b",
        "../up",
        "./m",
        "gen 2",
        "v1",
        "V12",
        "v1x",
        "latest",
        "LATEST",
        "champion",
        "my_alias-2",
        "a.b",
        "x" * 255,
        "x" * 256,
        "über",
    ):
        assert ours_accepts(value) == mlflow_accepts(value), (kind, value)


def test_check_names_a_missing_data_root_by_its_key(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(merge(DEFAULT, {"prepare": {"data_root": "data/nothere"}})))
    out = run(["bvae", "check"], tmp_path, check=False)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "error: prepare.data_root: 'data/nothere' does not exist; DVC needs it as the prepare stage's dependency (for "
        "digits too: the default data/raw holds a README): create it or fix the path"
    ]
    (tmp_path / "data/nothere").mkdir(parents=True)
    assert run(["bvae", "check"], tmp_path).stdout == "params.yaml: ok\n"


def offered_values(path) -> list[tuple[str, str]]:
    """(dotted key, value) for every value a comment of params.yaml offers: the first clause of
    ``key: value  # a | b (why) | c: ...`` lists them, each the first word of its part (an upper-case
    word such as N is a placeholder, not a value)."""
    import re

    found, stack = [], []
    for line in path.read_text().splitlines():
        m = re.match(r"^( *)([\w.]+):\s*([^#]*?)\s*(?:#\s*(.*))?$", line)
        if not m:
            continue
        indent = len(m.group(1)) // 2
        stack = stack[:indent] + [m.group(2)]
        comment = (m.group(4) or "").split(";")[0]
        if " | " in comment:
            for part in comment.split(" | "):
                word = re.match(r"[^\s:(,]+", part.strip()).group(0)
                if not word.isupper():
                    found.append((".".join(stack), word))
    return found


def check_offered(path) -> list[tuple[str, str]]:
    """Set each offered value in params.yaml's own params and check that key (the schema's check of
    every key; combinations apart). Returns the values checked."""
    offered = offered_values(path)
    for key, word in offered:
        params = yaml.safe_load(path.read_text())
        *parents, leaf = key.split(".")
        node = params
        for name in parents:
            node = node[name]
        node[leaf] = yaml.safe_load(word)
        schema._walk(params, schema._schema(), "")
    return offered


def test_params_comments_offer_only_values_the_schema_accepts():
    offered = check_offered(ROOT / "params.yaml")
    assert ("evaluate.protocol", "dai_wipf") in offered and ("threads", "adaptive") in offered  # the parser reads them
    assert ("train.model.arch", "infogan") in offered and len(offered) >= 30


def test_offered_values_the_schema_rejects_are_found(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text((ROOT / "params.yaml").read_text().replace("| asperti", "| asperti | paper"))
    with pytest.raises(PipelineError, match="evaluate.protocol: 'paper' is not one of"):
        check_offered(bad)


def test_the_config_layer_and_params_checks_run_without_torch(tmp_path):
    """pipeline/config (params, schema, choices, sizing) and what it imports stay torch-free: with
    torch made unimportable, params.yaml loads and validates and a preset applies."""
    import shutil
    import subprocess
    import sys

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    code = (
        "import sys; sys.modules['torch'] = None  # import torch now raises ImportError\n"
        "import yaml\n"
        "from pipeline.config import choices, params, schema, sizing\n"
        "p = params.load_params('params.yaml')\n"
        f"print(params.apply_overlay('params.yaml', yaml.safe_load(open({str(ROOT / 'presets' / 'quick.yaml')!r}))) != [])\n"
        "print(sizing.latent_dim('auto', 1, 8)[0], 'torch' in sys.modules and sys.modules['torch'] is not None)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "8", "False"]


@pytest.mark.parametrize(
    "change, said",
    [
        ({"evaluate": {"num_samples": 100_000_000}}, "evaluate.num_samples: 100,000,000 needs about "),
        ({"evaluate": {"nll_samples": 100_000_000}}, "evaluate.nll_samples: 100,000,000 needs about "),
        ({"train": {"latent_dim": 100_000_000}}, "train.latent_dim: 100,000,000 needs about "),
    ],
)
def test_check_stops_sizes_the_data_or_the_machine_cannot_hold_naming_what_fits(tmp_path, change, said):
    """`bvae check` before `dvc repro`: a memory size names the largest value that fits, and an evaluate size of half that passes (half: the memory free moves while other
    work runs; a larger latent_dim also grows stage 2, checked after it)."""
    (tmp_path / "data/raw").mkdir(parents=True)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(merge(DEFAULT, change)))
    out = run(["bvae", "check"], tmp_path, check=False)
    (line,) = out.stderr.strip().splitlines()
    assert out.returncode == 2 and line.startswith(f"error: {said}"), line
    section, key = next(iter(change.items()))
    if "needs about" in line and section == "evaluate":
        fits = int(line.rsplit("the largest value that fits is ", 1)[1].replace(",", ""))
        params.write_text(yaml.safe_dump(merge(DEFAULT, {section: {next(iter(key)): fits // 2}})))
        assert run(["bvae", "check"], tmp_path).stdout == "params.yaml: ok\n"


def test_largest_value_that_fits_is_the_boundary():
    from pipeline.hardware.sizes import largest

    assert largest(lambda v: v * v, 100, 50) == 10
    assert largest(lambda v: v * v, 99, 50) == 9
    assert largest(lambda v: 10 + v, 5, 50) == 0
    assert largest(lambda v: v, 1e9, 7) == 7


def test_check_says_a_batch_larger_than_the_training_set_is_the_whole_set(tmp_path):
    """The digits' 1,293 training images: 1,797 less the test share (0.2, rounded up: 360), less
    the validation share of the rest (0.1 of 1,293, rounded up: 144)."""
    (tmp_path / "data/raw").mkdir(parents=True)
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump(merge(DEFAULT, {"train": {"batch_size": 10_000_000}, "stage2": {"batch_size": 5_000}}))
    )
    out = run(["bvae", "check"], tmp_path)
    assert out.stdout.splitlines() == [
        "note: train.batch_size: 10,000,000 is more than the 1,293 training images each epoch is drawn from: every "
        "step is one full batch of 1,293, one step an epoch (set it to at most 1,293, or lower, for more steps)",
        "note: stage2.batch_size: 5,000 is more than the 1,293 latent codes (one a training image) each epoch is "
        "drawn from: every step is one full batch of 1,293, one step an epoch (set it to at most 1,293, or lower, "
        "for more steps)",
        "params.yaml: ok",
    ]


def _python_without_torch() -> str:
    """The interpreter this environment was made from, when it has no torch (else skip)."""
    import subprocess
    import sys

    base = getattr(sys, "_base_executable", None)
    if not base or subprocess.run([base, "-c", "import torch"], capture_output=True).returncode == 0:
        pytest.skip("needs a Python without torch (the one the environment was made from)")
    return base


def test_a_stage_started_outside_the_environment_finds_it_or_says_to_activate_it(tmp_path):
    """`.venv/bin/dvc repro` without activating runs `python -m stages.X` with PATH's python."""
    import shutil
    import subprocess

    python = _python_without_torch()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    found = subprocess.run(
        [python, "-m", "stages.prepare", "--help"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert found.returncode == 0 and found.stdout.startswith("Usage: "), found.stderr  # re-ran itself in .venv
    shutil.copytree(ROOT / "stages", tmp_path / "stages")  # a copy with no .venv beside it
    alone = subprocess.run([python, "-m", "stages.prepare"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert alone.returncode == 2 and alone.stderr.splitlines() == [
        f"error: {python} has no torch: this stage runs in the project's environment; activate it "
        "(`source .venv/bin/activate`, made by `bash scripts/setup.sh`) and run the same command again"
    ]
