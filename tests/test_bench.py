"""Every script in bench/ runs on the current code, each with its smallest settings, and prints
its comparison (heavy: the pipeline benches run the real `dvc repro` in fresh copies)."""

import sys

import pytest

from conftest import ROOT, run

pytestmark = pytest.mark.heavy  # end-to-end runs of the real DVC pipeline (`pytest -m heavy`; CI runs them)

# A pipeline of a few seconds a stage, for the benches that run whole pipelines.
TINY = [
    *("-S", "prepare.limit_train=200", "-S", "prepare.limit_test=60", "-S", "reference.classifier.epochs=1"),
    *("-S", "train.epochs=1", "-S", "stage2.epochs=2", "-S", "stage2.width=32", "-S", "evaluate.num_samples=60"),
]


def bench(script: str, *args: str, cwd=ROOT) -> list[str]:
    out = run([sys.executable, str(ROOT / "bench" / script), *args], cwd)
    return (out.stdout + out.stderr).splitlines()


def test_threads_times_both_counts_and_compares_their_numbers():
    lines = bench("threads.py", "--steps", "2", "--busy", "0", "--models", "default")
    rows = [line for line in lines if line.startswith("default: ")]
    assert len(rows) == 3 and all(line.split()[-1] in ("yes",) or "no (max diff" in line for line in rows)


def test_optimiser_times_the_three_updates_against_the_single_tensor_one():
    lines = bench("optimiser.py", "--epochs", "2", "--repeats", "1")
    assert [line.split()[:2] for line in lines if line.startswith("stage ")] == [["stage", "1"], ["stage", "2"]]
    assert all(
        "single" in line and "(1.00x)" in line and "fused" in line for line in lines if line.startswith("stage ")
    )


def test_steps_compares_the_loop_with_a_bare_one():
    lines = bench("steps.py", "--epochs", "2", "--repeats", "1")
    assert sum("ms/step" in line and "x" in line.split(":")[-1] for line in lines) == 2


def test_eval_and_likelihood_costs_print_their_ratios():
    assert any("cached" in line.lower() for line in bench("eval_cost.py", "--num", "200", "--threads", "1"))
    lines = bench("likelihood_cost.py", "--images", "100", "--samples", "2", "--threads", "1")
    assert any("x the baseline" in line for line in lines)


def test_train_speed_prints_the_ratio_to_a_dataloader_loop(tmp_path):
    lines = bench("train_speed.py", "--images", "200", "--epochs", "1", "--out", str(tmp_path / "speed.json"))
    assert any(line.startswith("plain DataLoader loop") and "1.00x" in line for line in lines)
    assert (tmp_path / "speed.json").is_file()


def test_make_folder_writes_its_styles(tmp_path):
    bench("make_folder.py", str(tmp_path / "styles"), "--per-class", "2", "--size", "8")
    assert sorted(p.name for p in (tmp_path / "styles").iterdir()) == ["blobs", "gratings", "rings", "tiles"]
    assert len(list((tmp_path / "styles").rglob("*.png"))) == 8


def test_pipeline_time_and_shared_run_the_pipeline_in_fresh_copies():
    lines = bench("pipeline_time.py", *TINY)
    assert any(line.startswith("default pipeline (working tree") for line in lines)
    assert (
        sum(
            line.split()[0] in ("prepare", "reference", "train_vae", "train_stage2", "evaluate")
            for line in lines
            if line
        )
        == 5
    )
    lines = bench("shared.py", "--only", "a,b", *TINY)
    assert any(line.startswith("(a) alone:") for line in lines) and any(
        line.startswith("(b) two side by side") for line in lines
    )
