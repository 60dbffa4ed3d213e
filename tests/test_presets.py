"""Presets: `bvae preset NAME` rewrites params.yaml in place, and each preset's models train."""

import shutil

import pytest
import torch
import yaml

from conftest import ROOT, run
from pipeline import PipelineError
from pipeline.balance import build_balance
from pipeline.config.params import apply_overlay
from pipeline.hardware.device import Speed
from pipeline.models import build_stage1, build_stage2
from pipeline.training.loop import Settings, fit

PAPERS = ("mnist", "fashion_mnist", "cifar10", "celeba")

NATIVE = {"mnist": (1, 28), "fashion_mnist": (1, 28), "cifar10": (3, 32), "celeba": (3, 64)}  # channels, side
PRESETS = sorted(p.stem for p in (ROOT / "presets").glob("*.yaml"))


def test_every_paper_preset_and_quick_exist():
    assert {"mnist", "fashion_mnist", "cifar10", "celeba", "quick", "dai_wipf_mnist", "dai_wipf_fashion_mnist"} <= set(
        PRESETS
    )


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_dai_wipf_reproduction_is_their_model_and_ours_differs_only_in_the_balance(name):
    """Their TwoStageVAE learns gamma in both stages (network/two_stage_vae_model.py lines 96-97 and 190);
    `mnist` / `fashion_mnist` run our method under their protocol: the same set-up but the balance."""
    theirs = yaml.safe_load((ROOT / "presets" / f"dai_wipf_{name}.yaml").read_text())
    ours = yaml.safe_load((ROOT / "presets" / f"{name}.yaml").read_text())
    assert theirs["train"]["balance"] == theirs["stage2"]["balance"] == {"strategy": "learned_gamma", "lr_factor": 1.0}
    assert ours["train"]["balance"]["strategy"] == ours["stage2"]["balance"]["strategy"] == "running_gamma"
    for section in theirs:
        for key in theirs[section]:
            if key != "balance":
                assert theirs[section][key] == ours[section][key], (section, key)
    assert theirs["evaluate"]["protocol"] == "dai_wipf" and theirs["train"]["model"] == {"arch": "infogan"}


def test_list_shows_each_whole_description(tmp_path):
    listed = " ".join(run(["bvae", "preset", "--list"], cwd=tmp_path).stdout.split())
    for name in PRESETS:
        lines = (ROOT / "presets" / f"{name}.yaml").read_text().splitlines()
        header = " ".join(" ".join(x.lstrip("# ") for x in lines if x.startswith("#")).split())
        assert f"{name} {header}" in listed  # not cut after the first line


@pytest.mark.parametrize("name", PRESETS)
def test_preset_applies_and_trains_a_step(tmp_path, name):
    params_path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params_path)
    proc = run(["bvae", "preset", name, "--params", str(params_path)], cwd=tmp_path)
    assert f"applied preset {name}" in proc.stdout
    params = yaml.safe_load(params_path.read_text())
    preset = yaml.safe_load((ROOT / "presets" / f"{name}.yaml").read_text())
    assert params["train"]["model"] == params["train"]["model"] | preset["train"]["model"]
    assert params["train"]["batch_size"] == preset["train"]["batch_size"]
    assert "# stage train_vae" in params_path.read_text()  # comments kept

    channels, side = NATIVE[params["prepare"]["dataset"]]
    side = params["prepare"]["image_size"] or side
    train, stage2 = params["train"], params["stage2"]
    batch = train["batch_size"]
    torch.manual_seed(0)
    data = torch.randint(0, 256, (batch, channels, side, side), dtype=torch.uint8)
    model = build_stage1(train, channels, side)
    history = fit(
        model,
        build_balance(train["balance"], "train.balance"),
        lambda e: data,
        Settings(
            epochs=1,
            batch_size=batch,
            lr=train["lr"],
            desc=name,
            lr_halve_every=train["lr_halve_every"],
            speed=Speed(channels_last=True),
        ),
    )
    assert torch.isfinite(torch.tensor(history[0]["loss"]))
    codes = torch.randn(stage2["batch_size"], train["latent_dim"])
    history2 = fit(
        build_stage2(stage2, train["latent_dim"]),
        build_balance(stage2["balance"], "stage2.balance"),
        lambda e: codes,
        Settings(epochs=1, batch_size=stage2["batch_size"], lr=stage2["lr"], desc=name),
    )
    assert torch.isfinite(torch.tensor(history2[0]["loss"]))


def test_paper_presets_use_the_papers_settings():
    cifar = yaml.safe_load((ROOT / "presets" / "cifar10.yaml").read_text())
    celeba = yaml.safe_load((ROOT / "presets" / "celeba.yaml").read_text())
    assert (cifar["train"]["model"]["num_scale"], celeba["train"]["model"]["num_scale"]) == (3, 4)
    assert (cifar["train"]["epochs"], cifar["train"]["lr"], cifar["train"]["lr_halve_every"]) == (700, 1e-4, 250)
    assert (celeba["train"]["epochs"], celeba["train"]["lr"], celeba["train"]["lr_halve_every"]) == (70, 5e-5, 60)
    assert (cifar["stage2"]["epochs"], celeba["stage2"]["epochs"]) == (1400, 140)
    assert {p["train"]["batch_size"] for p in (cifar, celeba)} == {100}
    # computed_gamma.py line 743: stage-2 learning rate halved every 400 (CIFAR-10) and 120 (CelebA) epochs
    assert (cifar["stage2"]["lr_halve_every"], celeba["stage2"]["lr_halve_every"]) == (400, 120)
    assert (cifar["prepare"]["jpeg_quality"], celeba["prepare"]["jpeg_quality"]) == (75, None)
    for name in ("mnist", "fashion_mnist"):  # TwoStageVAE demo.py defaults (lines 147-170)
        p = yaml.safe_load((ROOT / "presets" / f"{name}.yaml").read_text())
        assert p["train"]["model"]["arch"] == "infogan" and p["train"]["batch_size"] == p["stage2"]["batch_size"] == 64
        assert (p["train"]["epochs"], p["train"]["lr"], p["train"]["lr_halve_every"]) == (400, 1e-4, 150)
        assert (p["stage2"]["epochs"], p["stage2"]["lr"], p["stage2"]["lr_halve_every"]) == (800, 1e-4, 300)
    protocol = {n: yaml.safe_load((ROOT / "presets" / f"{n}.yaml").read_text())["evaluate"]["protocol"] for n in PAPERS}
    assert protocol == {"mnist": "dai_wipf", "fashion_mnist": "dai_wipf", "cifar10": "asperti", "celeba": "asperti"}


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "celeba"])
def test_paper_presets_train_in_fp32_and_say_every_difference(name):
    text = (ROOT / "presets" / f"{name}.yaml").read_text()
    assert yaml.safe_load(text)["train"]["precision"] == "fp32"  # both references train in fp32
    header = text[: text.index("prepare:")]
    for said in ("partial batch", "initialisation", "log sigma", "epsilon", "uint8", "fp32", "likelihood"):
        assert said in header, said
    if name in ("mnist", "fashion_mnist"):  # TS:96-97: Dai & Wipf learn gamma in stage 2 as well
        assert "stage2.balance.strategy:\n#   learned_gamma" in header
    else:
        assert "lines 544-556" in header  # the published run's warm start
    if name == "cifar10":
        assert "line 743" in header and "line 775" in header  # the two stage-2 schedules


def test_celeba_preset_scores_10k_against_10k():
    # computed_gamma.py lines 619-621 and 650-651: a random 10,000 of the test images and 10,000
    # of each set (fid.py then scores the first 9,984 of each, lines 51-53)
    from pipeline.evaluation import protocols

    preset = yaml.safe_load((ROOT / "presets" / "celeba.yaml").read_text())
    cls = protocols.PROTOCOLS[preset["evaluate"]["protocol"]]

    class Codes(torch.nn.Module):  # just enough of the two stages for the protocol's set-up
        latent_dim = 2

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def encode(self, x):
            return torch.randn(len(x), 2), torch.zeros(len(x), 2)

        def decode(self, u):
            return u

    test = torch.zeros(19_962, 3, 1, 1, dtype=torch.uint8)  # CelebA's official test split
    ctx = protocols.Context(Codes(), Codes(), 1.0, None, torch.ones(2), test, [], None, False, 500, 0)
    p = cls(ctx)
    assert (len(p.real_rows), len(p.rec_rows), p.count) == (10_000, 10_000, 10_000)
    assert (p.kept(len(p.real_rows)), p.kept(p.count)) == (9_984, 9_984)


def test_overlay_keeps_comments_and_rejects_unknown_keys_and_invalid_results(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    before = path.read_text()
    assert apply_overlay(path, {"train": {"lr": 5e-5}}) == [("train.lr", 0.001, 5e-5)]
    after = path.read_text()
    assert after == before.replace("  lr: 0.001\n", "  lr: 5.0e-05\n", 1)  # only that line; comments kept
    assert yaml.safe_load(after)["train"]["lr"] == 5e-5  # YAML 1.1 would read 5e-05 as a string
    with pytest.raises(PipelineError, match="has no key train.lrr"):
        apply_overlay(path, {"train": {"lrr": 1}})
    with pytest.raises(PipelineError, match="train.epochs: 0 is out of range"):
        apply_overlay(path, {"train": {"epochs": 0}})
    assert path.read_text() == after


def test_unknown_preset_is_a_clear_error(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    proc = run(["bvae", "preset", "imagenet"], cwd=tmp_path, check=False)
    assert (
        proc.returncode == 2
        and "unknown preset 'imagenet' (choose one of celeba, cifar10, dai_wipf_fashion_mnist, dai_wipf_mnist, fashion_mnist, mnist"
        in proc.stderr
    )
    assert (tmp_path / "params.yaml").read_text() == (ROOT / "params.yaml").read_text()
