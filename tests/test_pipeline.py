"""The real `dvc repro` on tiny params in a temporary git repo: outputs, metrics, caching,
experiments, MLflow runs, determinism, the Inception path and its clear error."""

import csv
import json
import os
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from mlflow import MlflowClient
from PIL import Image

from conftest import TINY, make_project, merge, queued_names, run, wait_for_queue
from stages import code_deps

pytestmark = pytest.mark.heavy  # end-to-end runs of the real DVC pipeline (`pytest -m heavy`; CI runs them)

STAGES = ["prepare", "reference", "train_vae", "train_stage2", "evaluate"]
FIDS = ["fid_domain_rec", "fid_domain_gen1", "fid_domain_gen2"]


# Put on PYTHONPATH, Python imports it in every process it starts: at exit it writes the
# argv and the module files the process loaded (the stages' real imports, lazy ones included).
MODULES_AT_EXIT = """
import atexit, os, sys

def _write():
    files = sorted({m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)})
    with open(os.path.join(os.environ["TEST_MODULES_DIR"], f"{os.getpid()}.txt"), "w") as f:
        f.write("\\n".join([" ".join(sys.argv), *files]))

atexit.register(_write)
"""


def project_processes(project) -> list[str]:
    """Processes whose working folder is in ``project`` (what a command of the project started)."""
    found = []
    for proc in psutil.process_iter(["pid", "cwd", "cmdline"]):
        cwd = proc.info["cwd"] or ""
        if proc.pid != os.getpid() and (cwd == str(project) or cwd.startswith(f"{project}/")):
            found.append(f"{proc.pid}: {' '.join(proc.info['cmdline'] or [])}")
    return found


@pytest.fixture(scope="module")
def repro(tmp_path_factory):
    """One tiny project, reproduced once by `dvc repro`, shared by the tests below. Also
    returns the processes of the project alive right after the command returned, and the
    project modules each stage process loaded."""
    project = make_project(tmp_path_factory.mktemp("pipeline"), TINY)
    probe, modules = tmp_path_factory.mktemp("probe"), tmp_path_factory.mktemp("modules")
    (probe / "sitecustomize.py").write_text(MODULES_AT_EXIT)
    out = run(["dvc", "repro"], project, PYTHONPATH=str(probe), TEST_MODULES_DIR=str(modules))
    left = project_processes(project)
    loaded = {}
    for dump in modules.glob("*.txt"):
        argv, *files = dump.read_text().splitlines()
        stage = Path(argv.split()[0]).stem if "/stages/" in argv.split()[0] else None
        if stage in STAGES:
            loaded[stage] = {str(Path(f).relative_to(project)) for f in files if f.startswith(f"{project}/")}
    return project, out.stdout + out.stderr, left, loaded


def client(project):
    return MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


def runs(project):
    c = client(project)
    exp = c.get_experiment_by_name("balanced-vae")
    return c.search_runs([exp.experiment_id], max_results=1000)


def test_repro_runs_every_stage_and_writes_outputs(repro):
    project, log, *_ = repro
    for stage in STAGES:
        assert f"Running stage '{stage}'" in log
    assert "\r" not in log and "\x1b[" not in log  # progress bars write plain lines to a log
    assert "Pickle" not in log and "Traceback" not in log  # MLflow's pickle warning, once per model, is silenced
    assert "KID: the unbiased MMD^2 of torch-fidelity" in log and "(subsets of 30)" in log
    assert "reference.features: auto: domain features (the data has class labels)" in log
    assert "train_vae: conv VAE, latent_dim 8 (auto: the power of two nearest D / 12 in [8, 64] for 1x8x8" in log
    floor = torch.load(project / "reference/real_stats.pt", weights_only=True)["floor"]  # metrics/ rounds it
    assert f"FID floor (real training against test images, domain features): {floor:.4g}" in log
    fid = json.loads((project / "metrics/evaluate.json").read_text())["fid_domain_gen2"]
    assert f"gen2           FID {fid:8.3f} ({fid / floor:5.1f}x the floor)" in log  # every FID on its scale
    for path in [
        "data/prepared/train.pt",
        "data/prepared/test.pt",
        "data/prepared/meta.json",
        "models/classifier.pt",
        "reference/real_stats.pt",
        "models/vae.pt",
        "models/stage2.pt",
        "models/gmm.pt",
    ]:
        assert (project / path).is_file(), path
    meta = json.loads((project / "data/prepared/meta.json").read_text())
    assert (meta["num_train"], meta["num_val"], meta["num_test"], meta["image_size"], meta["channels"]) == (
        270,
        30,
        60,
        8,
        1,
    )
    history = list(csv.DictReader(open(project / "plots/train_vae/history.csv")))
    assert [int(r["epoch"]) for r in history] == [1, 2, 3]
    assert {"rec", "kl", "loss", "gamma", "beta_eff"} <= set(history[0])
    assert float(history[-1]["gamma"]) < 1.0
    for name in ("real", "rec", "gen1", "gen2", "gmm"):
        img = Image.open(project / f"plots/evaluate/{name}.png")
        assert img.format == "PNG" and img.size == (292, 292)  # 8x8 grid of 8x8 images, 1px gaps: 73 px, enlarged 4x


def test_no_process_of_the_project_outlives_dvc_repro(repro):
    *_, left, _ = repro
    assert left == []


def test_each_stage_loads_only_project_modules_among_its_code_deps(repro):
    *_, loaded = repro
    assert set(loaded) == set(STAGES)
    for stage, files in loaded.items():
        assert f"stages/{stage}.py" in files and "pipeline/__init__.py" in files  # the dump saw the stage's imports
        assert files - set(code_deps.stage_files(stage)) - set(code_deps.NOT_DEPS) == set(), stage


def test_an_edit_to_a_module_reruns_the_stages_that_run_it_and_no_other(repro):
    project, *_ = repro
    module = project / "pipeline/evaluation/sampling.py"
    original = module.read_text()
    try:
        module.write_text(original + "# an edit\n")
        status = run(["dvc", "status", "--json"], project).stdout
        assert set(json.loads(status)) == {"train_vae", "train_stage2", "evaluate"}  # reconstruct, codes, samples
    finally:
        module.write_text(original)
    assert json.loads(run(["dvc", "status", "--json"], project).stdout) == {}


def test_mlflow_records_uncommitted_changes_and_a_clean_tree_carries_none(repro, tmp_path):
    project, *_ = repro
    head = run(["git", "rev-parse", "HEAD"], project).stdout.strip()
    stage_runs = [r for r in runs(project) if r.data.tags.get("bvae.role") == "stage"]
    assert all(
        "bvae.git.dirty" not in r.data.tags and not client(project).list_artifacts(r.info.run_id, "code")
        for r in stage_runs
    )
    (parent,) = [r for r in runs(project) if r.data.tags.get("bvae.role") == "pipeline"]
    assert "bvae.git.dirty" not in parent.data.tags and parent.data.tags["bvae.code.prepare"] == head
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"  # a store of its own: this project's keeps one run per stage
    c = MlflowClient(store)
    module = project / "pipeline/data/__init__.py"
    original = module.read_text()
    try:
        module.write_text(original + "# not committed\n")
        run(["python", "-m", "stages.prepare"], project, MLFLOW_TRACKING_URI=store)
    finally:
        module.write_text(original)
    (dirty,) = c.search_runs([c.get_experiment_by_name("balanced-vae").experiment_id], "tags.`bvae.stage` = 'prepare'")
    assert dirty.data.tags["bvae.git.dirty"] == "true" and dirty.data.tags["mlflow.source.git.commit"] == head
    diff = Path(c.download_artifacts(dirty.info.run_id, "code/uncommitted.diff")).read_text()
    assert "+# not committed" in diff and "pipeline/data/__init__.py" in diff and "dvc.lock" not in diff
    parent_id = dirty.data.tags["mlflow.parentRunId"]
    tags = c.get_run(parent_id).data.tags
    assert tags["bvae.git.dirty"] == "true" and tags["bvae.code.prepare"] == f"{head} + uncommitted changes"
    assert "+# not committed" in Path(c.download_artifacts(parent_id, "code/prepare.diff")).read_text()
    run(["python", "-m", "stages.prepare"], project, MLFLOW_TRACKING_URI=store)  # from a clean tree again
    tags = c.get_run(parent_id).data.tags
    assert "bvae.git.dirty" not in tags and tags["bvae.code.prepare"] == head


def test_metrics_show_lists_the_fids(repro):
    project, *_ = repro
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], project).stdout)
    headline = shown[""]["data"]["metrics/evaluate.json"]["data"]
    metrics = json.loads((project / "metrics/all/evaluate.json").read_text())
    samplers = ("rec", "gen1", "gen2", "gen2_noise", "gmm", "gen2_rescaled")
    fidelity = {
        f"{m}_domain_{s}"
        for m in ("fid", "kid_mean", "kid_std", "kid_subset_size", "precision", "recall")
        for s in samplers
    }
    nll = {
        f"{u}_{b}_{m}_gamma_{g}"
        for u in ("nll", "bpd")
        for b in ("elbo", "iwae")
        for m in ("stage1", "twostage")
        for g in ("trained", "test")
    } | {"gamma_trained", "gamma_test"}
    nll |= {f"{u}_iwae_{m}_gamma_iwae" for u in ("nll", "bpd") for m in ("stage1", "twostage")}
    nll |= {"gamma_iwae_stage1", "gamma_iwae_twostage"}
    nll |= {f"bpd_iwae_{m}_gamma_{g}_sem" for m in ("stage1", "twostage") for g in ("trained", "test", "iwae")}
    selection = {f"selection_fid_domain_{s}" for s in samplers[1:]}  # what chose the registered generator
    assert fidelity | nll | selection == set(metrics)  # no constants: the data dimension is a param of the parent run
    assert set(headline) == {f"fid_domain_{s}" for s in samplers} | {
        "bpd_iwae_stage1_gamma_trained",
        "bpd_iwae_stage1_gamma_test",
        "bpd_iwae_twostage_gamma_test",
        "bpd_iwae_stage1_gamma_iwae",
        "bpd_iwae_twostage_gamma_iwae",
        "gamma_test",
        "gamma_iwae_stage1",
    }
    assert all(headline[k] == metrics[k] for k in headline)
    assert all(metrics[f"fid_domain_{s}"] >= 0 and 0 <= metrics[f"recall_domain_{s}"] <= 1 for s in samplers)
    assert all(metrics[f"kid_subset_size_domain_{s}"] == 30 for s in samplers)  # half of the 60 test images
    for m in ("stage1", "twostage"):  # ELBO <= IWAE bound: the negative bounds the other way round
        assert metrics[f"nll_elbo_{m}_gamma_test"] >= metrics[f"nll_iwae_{m}_gamma_test"] > 0
        assert metrics[f"nll_elbo_{m}_gamma_test"] <= metrics[f"nll_elbo_{m}_gamma_trained"]  # test gamma: best ELBO
        best = min(metrics[f"nll_iwae_{m}_gamma_{g}"] for g in ("trained", "test"))
        assert metrics[f"nll_iwae_{m}_gamma_iwae"] <= best  # the IWAE-optimal gamma: best IWAE
    for name in samplers:
        assert Image.open(project / f"plots/evaluate/{name}.png").format == "PNG"


def test_mlflow_parent_run_with_its_params_and_child_per_stage(repro):
    project, *_ = repro
    c = client(project)
    # MLflow 3's UI opens an experiment of this kind on its training runs (mlflow/server/js: ExperimentKind)
    assert c.get_experiment_by_name("balanced-vae").tags["mlflow.experimentKind"] == "custom_model_development"
    all_runs = runs(project)
    parents = [r for r in all_runs if r.data.tags.get("bvae.role") == "pipeline"]
    assert len(parents) == 1
    parent = parents[0]
    config = parent.data.tags["bvae.config_hash"]
    assert parent.info.run_name == f"running_gamma k=1.0 · {config[:6]}"
    assert parent.data.tags["bvae.balance"] == "running_gamma k=1.0" and parent.data.tags["bvae.changed"] == "nothing"
    assert parent.data.tags["mlflow.note.content"].startswith("Dataset digits; stage 1 running_gamma k=1.0, epochs 3,")
    assert (
        parent.data.params["train.balance.strategy"] == "running_gamma"
        and parent.data.params["train.balance.k"] == "1.0"
    )
    assert "train.balance.beta" not in parent.data.params  # running gamma ignores beta
    assert parent.data.params["prepare.limit_train"] == "300"
    assert parent.data.params["data_dim"] == "64"  # 8x8 grey digits: D, a param (constant), not a metric
    assert set(parent.data.metrics) == set(json.loads((project / "metrics/evaluate.json").read_text())) | {
        f"train_vae.final_{k}" for k in ("gamma", "beta_eff", "active_units", "kl_grad_share")
    } | {"fid_domain_train_vs_test"}  # headline only, and the floor its FIDs are read against
    # the order the UI lists them in (and its Compare plot opens on the first): GEN-2 FID first
    assert next(iter(c.get_run(parent.info.run_id).data.metrics)) == "fid_domain_gen2"
    head = run(["git", "rev-parse", "HEAD"], project).stdout.strip()
    assert parent.data.tags["mlflow.source.git.commit"] == head
    assert parent.data.tags["mlflow.source.name"] == "dvc repro"  # what the UI's Source column shows
    # the grids at the artifact root, where MLflow's Compare looks for images every run has
    grids = {a.path for a in c.list_artifacts(parent.info.run_id) if a.path.endswith(".png")}
    assert grids == {f"samples_{s}.png" for s in ("real", "rec", "gen1", "gen2", "gen2_noise", "gmm", "gen2_rescaled")}
    (dataset,) = parent.inputs.dataset_inputs  # the data it used, with the content hash prepare computed
    meta = json.loads((project / "data/prepared/meta.json").read_text())
    assert (dataset.dataset.name, dataset.dataset.digest) == ("digits", meta["raw_sha256"][:36])
    evaluate = next(r for r in all_runs if r.data.tags.get("bvae.stage") == "evaluate")
    assert parent.outputs.model_outputs and {m.model_id for m in parent.outputs.model_outputs} == {
        m.model_id for m in evaluate.outputs.model_outputs
    }  # the generator it produced
    (version,) = c.search_model_versions("name = 'balanced-vae-generator'")
    assert version.run_id == parent.info.run_id  # its source run: the configuration
    prefix = "evaluate/selection_fid_domain_"
    chosen = {k.removeprefix(prefix): v for k, v in evaluate.data.metrics.items() if k.startswith(prefix)}
    assert set(chosen) == {"gen1", "gen2", "gen2_noise", "gmm", "gen2_rescaled"}
    assert version.tags["bvae.sampler"] == min(chosen, key=chosen.get)  # the lowest FID against validation images
    assert version.description.startswith(
        f"Generator: sampler {version.tags['bvae.sampler']}: the lowest FID against validation images held out of "
    )
    assert (
        version.tags["fid_domain_generator"]
        == f"{parent.data.metrics['fid_domain_' + version.tags['bvae.sampler']]:.6g}"
    )
    children = [r for r in all_runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == sorted(f"{s} · {parent.info.run_name}" for s in STAGES)
    train = next(r for r in children if r.data.tags["bvae.stage"] == "train_vae")
    gamma = c.get_metric_history(train.info.run_id, "train_vae/gamma")
    assert [m.step for m in gamma] == [1, 2, 3]
    assert {"train_vae/rec", "train_vae/kl", "train_vae/loss", "train_vae/beta_eff"} <= set(train.data.metrics)
    for child in children:  # every key under its stage: charts never mix stages
        assert all(k.startswith(child.data.tags["bvae.stage"] + "/") for k in child.data.metrics)
    assert "train.balance.beta" not in train.data.params and "train.balance.k" in train.data.params
    artifacts = {a.path for a in c.list_artifacts(train.info.run_id, "model")}
    assert "model/vae.pt" in artifacts
    # reconstructions: a stable file for Compare, and a timeline from the first epoch (grid_every 2, 3 epochs)
    assert Image.open(c.download_artifacts(train.info.run_id, "grids/reconstructions.png")).width >= 256
    timeline = {
        a.path.split("+step+")[1].split("+")[0]
        for a in c.list_artifacts(train.info.run_id, "images")
        if a.path.endswith(".png")
    }
    assert timeline == {"1", "2", "3"}
    assert (project / "mlartifacts").is_dir()  # artifacts next to mlflow.db at the repo root


@pytest.mark.parametrize("sampler", ["gen1", "gen2", "gen2_noise", "gmm", "gen2_rescaled"])
def test_sample_writes_the_asked_number_of_valid_pngs(repro, sampler, tmp_path):
    project, *_ = repro
    run(["bvae", "sample", "--sampler", sampler, "-n", "7", "--out", str(tmp_path / sampler)], project)
    files = sorted((tmp_path / sampler).iterdir())
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(7)]
    for f in files:
        img = Image.open(f)
        img.verify()
        assert Image.open(f).size == (8, 8) and Image.open(f).mode == "L"


def test_sample_from_the_registered_champion_says_so_and_matches_the_workspace(repro, tmp_path):
    project, *_ = repro
    ref = "models:/balanced-vae-generator@champion"
    out = run(["bvae", "sample", "--model", ref, "-n", "3", "--out", str(tmp_path / "champion")], project).stdout
    assert "models: registered model balanced-vae-generator version 1, pipeline run 'running_gamma k=1.0 · " in out
    out = run(["bvae", "sample", "-n", "3", "--out", str(tmp_path / "workspace")], project).stdout
    assert "models: the workspace's models/" in out
    for i in range(3):  # the champion is the pipeline's only run: the same models, the same images
        assert (tmp_path / "champion" / f"{i:06d}.png").read_bytes() == (
            tmp_path / "workspace" / f"{i:06d}.png"
        ).read_bytes()


def test_interpolation_grid(repro, tmp_path):
    project, *_ = repro
    run(["bvae", "interpolate", "--out", str(tmp_path / "i.png"), "--pairs", "3", "--steps", "5"], project)
    assert Image.open(tmp_path / "i.png").size == (4 * (7 * 9 + 1), 4 * (3 * 9 + 1))  # 3 rows of a, 5 steps, b; 4x


def test_registered_generator_and_stage_models_load_back_and_generate(repro):
    import mlflow
    import numpy as np
    import torch

    project, *_ = repro
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    try:
        generator = mlflow.pytorch.load_model("models:/balanced-vae-generator@candidate")
        images = generator(torch.randn(5, generator.latent_dim))
        assert images.shape == (5, 1, 8, 8) and 0 <= images.min() and images.max() <= 1
        pyfunc = mlflow.pyfunc.load_model("models:/balanced-vae-generator@candidate")
        assert list(pyfunc.metadata.signature.outputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 1, 8, 8]
        assert pyfunc.predict(np.zeros((2, generator.latent_dim), dtype="float32")).shape == (2, 1, 8, 8)
        train = next(r for r in runs(project) if r.data.tags.get("bvae.stage") == "train_vae")
        vae = mlflow.pytorch.load_model(f"runs:/{train.info.run_id}/vae")
        assert vae(torch.rand(3, 1, 8, 8)).shape == (3, 1, 8, 8)
    finally:
        mlflow.set_tracking_uri(None)


def test_second_repro_reruns_nothing(repro):
    project, *_ = repro
    out = run(["dvc", "repro"], project).stdout
    assert "Running stage" not in out and "Data and pipelines are up to date" in out


def test_experiment_on_an_evaluate_param_reruns_only_evaluate(repro):
    project, *_ = repro
    out = run(["dvc", "exp", "run", "-S", "evaluate.num_samples=40"], project)
    log = out.stdout + out.stderr
    assert "Running stage 'evaluate'" in log
    for stage in STAGES[:-1]:
        assert f"Running stage '{stage}'" not in log
    # --temp runs in a copy under .dvc/tmp/exps; its runs, models included, must land in the project's store
    registered = lambda: len(client(project).search_model_versions("name = 'balanced-vae-generator'"))  # noqa: E731
    before = registered()
    out = run(["dvc", "exp", "run", "--temp", "-S", "evaluate.seed=7"], project)
    assert "warning" not in out.stdout + out.stderr
    parents = [r for r in runs(project) if r.data.tags.get("bvae.role") == "pipeline"]
    seeds = sorted(p.data.params["evaluate.seed"] for p in parents)
    assert seeds == ["0", "0", "7"]
    assert all(set(FIDS) <= set(p.data.metrics) for p in parents)
    assert registered() == before + 1  # the --temp copy's generator is registered too


def test_same_params_give_identical_metrics(repro, tmp_path):
    first, *_ = repro
    second = make_project(tmp_path, TINY)
    run(["dvc", "repro"], second, BVAE_TRACKING="off")
    for path in [
        "metrics/reference.json",
        "metrics/train_vae.json",
        "metrics/train_stage2.json",
        "plots/train_vae/history.csv",
        "plots/train_stage2/history.csv",
    ]:
        assert (first / path).read_text() == (second / path).read_text(), path
    # evaluate.json of the first project changed with the experiments above: rerun its baseline params
    run(["dvc", "exp", "run", "-S", "evaluate.num_samples=60", "-S", "evaluate.seed=0"], first, BVAE_TRACKING="off")
    assert (first / "metrics/evaluate.json").read_text() == (second / "metrics/evaluate.json").read_text()


@pytest.mark.slow  # about a minute (Inception at 299 px on 2 cores): `bash scripts/test.sh -m slow`
def test_unlabelled_folder_with_inception_fid_random_weights(tmp_path, random_inception_weights):
    """A folder of images without class subfolders, outside the project (an external DVC
    dependency), scored with Inception features (`reference.features: auto`; random weights:
    plumbing, not numbers), its model sized by hand too small for it (a warning at the end)."""
    art = tmp_path / "artworks"
    art.mkdir()
    rng = np.random.default_rng(0)
    for i in range(60):
        Image.fromarray(rng.integers(0, 256, (20 + i % 7, 18, 3), dtype=np.uint8)).save(art / f"{i:03d}.jpg")
    params = merge(
        TINY,
        {
            "prepare": {"dataset": "folder", "data_root": str(art), "image_size": 16, "limit_test": 12},
            "reference": {"features": "auto", "inception_weights": str(random_inception_weights)},
            "train": {"latent_dim": 4},
            "evaluate": {"num_samples": 12, "samplers": ["gen2"], "rescale": False},
        },
    )
    project = make_project(tmp_path, params)
    out = run(["dvc", "repro"], project, BVAE_TRACKING="off")
    said = out.stdout + out.stderr
    assert "reference.features: auto: inception features (the data has no class labels" in said
    assert "train_vae: conv VAE, latent_dim 4 (train.latent_dim; the size rule would give 64" in said
    last = said[said.index("test mse") :].splitlines()[1]  # the line after the stage's summary
    assert last.startswith("train_vae: latent_dim 4 is small for 3x16x16 images (D = 768): the size rule gives 64")
    metrics = json.loads((project / "metrics/all/evaluate.json").read_text())
    assert {
        f"{m}_inception_{s}"
        for m in ("fid", "kid_mean", "kid_std", "kid_subset_size", "precision", "recall")
        for s in ("rec", "gen2")
    } <= set(metrics)
    assert set(json.loads((project / "metrics/reference.json").read_text())) == {"fid_inception_train_vs_test"}
    meta = json.loads((project / "data/prepared/meta.json").read_text())
    assert (meta["labelled"], meta["channels"], meta["image_size"], meta["num_test"]) == (False, 3, 16, 12)
    assert str(art) in (project / "dvc.lock").read_text()  # the raw images are a tracked dependency


def test_inception_without_weights_offline_fails_fast_and_clearly(tmp_path):
    project = make_project(tmp_path / "p", merge(TINY, {"reference": {"features": "inception"}}))
    out = run(
        ["python", "-m", "stages.reference"], project, check=False, TORCH_HOME=str(tmp_path / "torch"), BVAE_OFFLINE="1"
    )
    assert out.returncode == 2
    assert "weights-inception-2015-12-05-6726825d.pth" in out.stderr
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in out.stderr
    assert "Traceback" not in out.stderr and "Downloading" not in out.stderr  # no try at the network
    assert not (project / "models/classifier.pt").exists() and not (project / "mlflow.db").exists()


def test_compare_shows_the_likelihood_of_the_run(repro):
    project, *_ = repro
    metrics = json.loads((project / "metrics/evaluate.json").read_text())
    run(["bvae", "compare", "--out", "reports/one"], project)
    head, _, *rows = [r for r in (project / "reports/one/table.md").read_text().splitlines() if r.startswith("|")]
    keys = [c.strip() for c in head.split("|")]
    cells = [dict(zip(keys, [c.strip() for c in row.split("|")])) for row in rows]  # one per configuration so far
    expected = tuple(
        f"{metrics[k]:.3f}"
        for k in ("bpd_iwae_twostage_gamma_test", "bpd_iwae_stage1_gamma_trained", "bpd_iwae_stage1_gamma_iwae")
    )
    columns = (
        "bits/dim two-stage (IWAE, gamma_test)",
        "bits/dim stage 1 (IWAE, trained gamma)",
        "bits/dim stage 1 (IWAE, IWAE-optimal gamma)",
    )
    assert expected in [tuple(c[k] for k in columns) for c in cells]
    variance = (project / "reports/one/variance.md").read_text()
    gamma2 = metrics["gamma_test"] ** 2  # the test MSE, and the beta that matches it next to a summed squared error
    assert f"| {gamma2:.3g} " in variance and f"| {2 * gamma2:.3g} " in variance


@pytest.mark.slow  # about 3 minutes: `bash scripts/test.sh -m slow`
def test_queued_strategy_sweep_lands_in_one_experiment_and_compares(repro):
    project, *_ = repro
    before = {r.info.run_id for r in runs(project) if r.data.tags.get("bvae.role") == "pipeline"}
    names = []
    for strategy in ("fixed", "sigma"):
        names += queued_names(
            run(["dvc", "exp", "run", "--queue", "-S", f"train.balance.strategy={strategy}"], project).stdout
        )
    run(["dvc", "queue", "start", "-j", "1"], project)
    status = wait_for_queue(project, names, 600)
    assert [status[n] for n in names] == ["Success"] * 2, status
    new = [r for r in runs(project) if r.data.tags.get("bvae.role") == "pipeline" and r.info.run_id not in before]
    assert sorted(r.data.params["train.balance.strategy"] for r in new) == ["fixed", "sigma"]
    assert all(set(FIDS) <= set(r.data.metrics) and r.info.status == "FINISHED" for r in new)
    assert all("train_vae.final_active_units" in r.data.metrics for r in new)

    out = run(["bvae", "compare", "--out", "reports/cmp"], project).stdout
    table = (project / "reports/cmp/table.md").read_text()
    assert table in out + "\n" or table.strip() in out
    for strategy in ("fixed beta=1.0", "sigma"):
        assert f"| {strategy} | 1 |" in table  # one seed each
    # the repro's own configuration (named with the params that tell it apart from those of the
    # evaluate-only experiments the module's earlier tests ran on this project)
    assert "| running_gamma k=1.0 " in table
    for png in ("compare.png", "curves.png"):
        assert Image.open(project / "reports/cmp" / png).format == "PNG"


def test_reference_protocols_score_their_three_sets_and_refuse_too_few_test_images(repro):
    project, *_ = repro
    out = run(["dvc", "exp", "run", "-S", "evaluate.protocol=dai_wipf"], project)
    log = out.stdout + out.stderr
    assert "dai_wipf: 50 real test images against 10,000 of each set" in log  # 60 test images, batches of 50
    metrics = json.loads((project / "metrics/all/evaluate.json").read_text())
    assert {k for k in metrics if k.startswith("fid_")} == {f"fid_domain-dai_wipf_{s}" for s in ("rec", "gen1", "gen2")}
    assert metrics["kid_subset_size_domain-dai_wipf_gen2"] == 25  # half of the 50 real images scored
    # asperti's fid.py scores whole batches of 64: the 60 test images leave none
    bad = run(["dvc", "exp", "run", "-S", "evaluate.protocol=asperti"], project, check=False)
    assert bad.returncode != 0
    assert (
        "asperti scores whole batches of 64 images, as its reference's feature code does: 60 test images leave 0"
        in (bad.stdout + bad.stderr)
    )
    out = run(["dvc", "exp", "run", "-S", "evaluate.protocol=asperti", "-S", "prepare.limit_test=140"], project)
    log = out.stdout + out.stderr
    assert "asperti: 128 real test images against 9,984 of each set" in log
    assert "asperti: stage-2 variance loss / mse2 = " in log and "latent rescale " in log
    metrics = json.loads((project / "metrics/all/evaluate.json").read_text())
    assert {k for k in metrics if k.startswith("fid_")} == {f"fid_domain-asperti_{s}" for s in ("rec", "gen1", "gen2")}
    assert "asperti_var_loss_ratio" in metrics and metrics["asperti_adjust2"] > 0
