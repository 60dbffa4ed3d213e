"""The stage-1 size rule (pipeline/config/sizing.py), the answer plan and its time estimate
(pipeline/reports/plan.py), and FIDs on their floor's scale (pipeline/reports/compare.py)."""

import pytest
import yaml

from conftest import ROOT
from pipeline import PipelineError
from pipeline.config import sizing
from pipeline.config.choices import feature_space
from pipeline.config.schema import validate
from pipeline.reports import plan
from pipeline.reports.compare import Row, best_sampler, configurations, floor_ratio, markdown_table

pytestmark = pytest.mark.quick


def test_size_rule_gives_the_references_latent_sizes():
    # BalancingVAE computed_gamma.py:760 "latent_dim": 64; TwoStageVAE demo.py:150 --latent-dim default 64:
    # both run MNIST, CIFAR-10 and CelebA at 64. The digits default here: 8.
    assert sizing.rule(1, 8) == 8  # D = 64: 64 / 12 = 5.3 -> 4, raised to 8
    assert sizing.rule(1, 28) == 64  # D = 784: 65.3 -> 64
    assert sizing.rule(3, 32) == 64  # D = 3072: 256 -> 64 (the cap)
    assert sizing.rule(3, 64) == 64
    assert sizing.rule(1, 16) == 16  # D = 256: 21.3 -> 16 (log2 4.41 rounds to 4)
    assert sizing.rule(3, 8) == 16  # D = 192: 16 exactly


def test_auto_resolves_to_the_rule_and_a_number_is_kept():
    assert sizing.latent_dim("auto", 3, 32)[0] == 64 and "auto" in sizing.latent_dim("auto", 3, 32)[1]
    value, said = sizing.latent_dim(8, 3, 32)
    assert value == 8 and "would give 64" in said


def test_epochs_auto_is_a_budget_of_steps_and_a_number_is_kept(monkeypatch):
    monkeypatch.setattr(sizing, "STEPS", {"train": 1000, "stage2": 20_000})
    # 1,293 images in batches of 64: ceil(1293 / 64) = 21 steps an epoch, 1000 / 21 = 47.6 -> 48 epochs
    n, said = sizing.epochs("auto", "train", 1293, 64)
    assert n == 48 and said == (
        "epochs 48 (auto: the budget of 1,000 optimisation steps at 21 an epoch, 1,293 training images in batches "
        "of 64; set train.epochs to a number to override)"
    )
    assert sizing.epochs("auto", "stage2", 1293, 128)[0] == 1818  # 11 steps an epoch: 20,000 / 11 = 1,818.2
    assert sizing.epochs("auto", "train", 60_000, 64)[0] == 1  # 938 steps an epoch: at least one epoch
    assert sizing.epochs(40, "train", 1293, 64) == (40, "epochs 40 (train.epochs: 840 optimisation steps)")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    validate(params | {"stage2": params["stage2"] | {"epochs": "auto"}})
    with pytest.raises(PipelineError, match="^train.epochs: expected an integer or auto, got 'long'"):
        validate(params | {"train": params["train"] | {"epochs": "long"}})
    p = {"train": {"epochs": "auto", "batch_size": 64}, "stage2": {"epochs": "auto", "batch_size": 128}}
    p["evaluate"] = {"samplers": [], "rescale": False, "num_samples": 1, "nll_samples": 0}
    rates = plan.Rates(stage1_step_s=1.0, stage2_step_s=0.001, feature_images_per_s=1e9, forward_s=0.0, startup_s=0.0)
    assert plan.estimate(p, 1293, 0, rates) == pytest.approx(48 * 21 + 1818 * 11 * 0.001)  # the stages' steps


def test_too_small_below_a_quarter_of_the_rule():
    warning = sizing.too_small(8, 3, 32)  # the issue's case: the digits' 8 on 32 px colour images
    assert warning and "latent_dim 8" in warning and "64" in warning and "auto" in warning
    assert sizing.too_small(16, 1, 28) is None  # a quarter of 64: the quick preset's MNIST latent passes
    assert sizing.too_small(15, 1, 28) is not None
    assert sizing.too_small(8, 1, 8) is None  # the default on the digits


def test_params_accept_auto_and_name_it_in_the_error():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    validate(params | {"train": params["train"] | {"latent_dim": "auto"}})
    with pytest.raises(PipelineError, match="expected an integer or auto, got 'big'"):
        validate(params | {"train": params["train"] | {"latent_dim": "big"}})


def test_build_stage1_resolves_auto():
    from pipeline.models import build_stage1

    assert build_stage1({"latent_dim": "auto", "model": {"arch": "conv"}}, 3, 32).latent_dim == 64
    assert build_stage1({"latent_dim": "auto", "model": {"arch": "conv"}}, 1, 8).latent_dim == 8


def test_feature_space_auto_follows_the_labels():
    assert feature_space("auto", True) == "domain" and feature_space("auto", False) == "inception"
    assert feature_space("inception", True) == "inception"


def test_plan_runs_every_strategy_per_seed():
    runs = plan.runs(plan.reference_k(28, 64), 2)
    assert len(runs) == 16 and len({r.name for r in runs}) == 16
    assert [r.params["train.seed"] for r in runs] == [0] * 8 + [1] * 8
    assert {r.params["train.balance.strategy"] for r in runs} == {
        "fixed",
        "annealed",
        "learned_gamma",
        "running_gamma",
        "sigma",
    }
    ks = [r.params.get("train.balance.k") for r in runs[:8] if "train.balance.k" in r.params]
    assert ks == [1.0, 0.765625]  # presets/mnist.yaml's k: (2 * 28 / 64)^2
    assert plan.reference_k(32, 64) == 1.0  # the reference k is k = 1 here: one configuration, not two
    assert len(plan.runs(1.0, 2)) == 14
    assert plan.dvc_args(plan.configurations(1.0)[3]) == (
        "train.balance.strategy=annealed train.balance.beta=1.0 train.balance.cyclical=true"
    )
    assert runs[1].name == "fixed-beta0.1-s0" and runs[3].name == "annealed-beta1-cyclical-s0"


def test_estimate_arithmetic_by_hand():
    p = {
        "train": {"epochs": 10, "batch_size": 64},
        "stage2": {"epochs": 100, "batch_size": 128},
        "evaluate": {"samplers": ["gen1", "gen2"], "rescale": True, "num_samples": 1000, "nll_samples": 16},
    }
    rates = plan.Rates(stage1_step_s=0.02, stage2_step_s=0.001, feature_images_per_s=500.0, forward_s=1e-4)
    # stage 1: 10 x ceil(2560 / 64) = 400 steps x 0.02 = 8 s; stage 2: 100 x ceil(2560 / 128) = 2000 x 0.001 = 2 s;
    # images: 640 + 1000 x 3 = 3640, x (1 / 500 + 1e-4) = 7.644 s; likelihood: 640 x 16 x 1e-4 = 1.024 s; start-up 30 s
    assert plan.estimate(p, 2560, 640, rates) == pytest.approx(8 + 2 + 7.644 + 1.024 + 30)
    p["evaluate"]["num_samples"] = None  # as many as test images: 640 + 640 x 3 = 2560, x 0.0021 = 5.376 s
    assert plan.estimate(p, 2560, 640, rates) == pytest.approx(8 + 2 + 5.376 + 1.024 + 30)
    assert plan.estimate(p, 2561, 640, rates) == pytest.approx(8.2 + 2.1 + 5.376 + 1.024 + 30)  # a last short batch
    p["evaluate"]["nll_images"] = 100  # the likelihood on 100 of the test images: 100 x 16 x 1e-4 = 0.16 s
    assert plan.estimate(p, 2560, 640, rates) == pytest.approx(8 + 2 + 5.376 + 0.16 + 30)
    rates = plan.Rates(0.02, 0.001, 500.0, 1e-4, set_metrics_s=2.0)  # REC and 3 sampler sets scored: 4 x 2 s
    assert plan.estimate(p, 2560, 640, rates) == pytest.approx(8 + 2 + 5.376 + 0.16 + 8 + 30)
    assert [plan.duration(s) for s in (40, 59.6, 90, 3599, 3600 + 5 * 60)] == [
        "40 s",
        "1 min",
        "2 min",
        "1 h 00 min",
        "1 h 05 min",
    ]


def test_fid_on_the_floor_scale():
    floor = {"fid_domain_train_vs_test": 2.5}
    rows = [
        Row("a", "a", {"train.seed": "0"}, {"fid_domain_gen2": 10.0, "fid_domain_rec": 5.0} | floor),
        Row("b", "b", {"train.seed": "1"}, {"fid_domain_gen2": 12.0, "fid_domain_rec": 5.0} | floor),
    ]
    [g] = configurations(rows)
    assert floor_ratio(g, "fid_domain_gen2") == pytest.approx(11.0 / 2.5)
    assert floor_ratio(g, "fid_domain_gen2_rescaled") is None  # not measured
    table = markdown_table([g])
    assert "11.00 ± 1.41 (4.4x)" in table and "5.00 ± 0.00 (2.0x)" in table
    assert "the same features (domain 2.5)" in table
    [bare] = configurations([Row("c", "c", {}, {"fid_domain_gen2": 10.0})])  # runs from before the floor
    assert floor_ratio(bare, "fid_domain_gen2") is None and "x)" not in markdown_table([bare])


def test_the_table_shows_every_sampler_and_marks_the_best_of_each_configuration():
    metrics = {"fid_domain_rec": 3.0, "fid_domain_gen1": 40.0, "fid_domain_gen2": 12.0, "fid_domain_gmm": 9.5}
    [g] = configurations([Row("a", "a", {}, metrics)])
    assert best_sampler(metrics, "domain") == "fid_domain_gmm"  # REC is lower but no sampler
    table = markdown_table([g])
    assert "| FID domain REC | FID domain GEN-1 | FID domain GEN-2 | FID domain GMM |" in table  # none not measured
    assert "| 3.00 | 40.00 | 12.00 | **9.50** |" in table


def test_a_test_mse_well_above_the_training_mse_is_one_line():
    from pipeline.training.diagnostics import OVERFIT, overfit_note

    assert overfit_note(0.0110675, 0.0095) is None  # within OVERFIT (1.5x): said nothing
    note = overfit_note(0.038, 0.020)  # issue 38's artwork folder: test 0.038 against training 0.020
    assert OVERFIT == 1.5 and note.startswith("the test MSE 0.038 is 1.9x the training images' 0.02:")
    assert "\n" not in note
