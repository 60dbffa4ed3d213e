"""The training-speed benchmark runs and prints its comparison (slow: not in the default run)."""

import pytest

from conftest import ROOT, run


@pytest.mark.slow
def test_train_speed_benchmark_prints_ratios(tmp_path):
    out = run(
        [
            "python",
            str(ROOT / "bench/train_speed.py"),
            "--images",
            "300",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "speed.json"),
        ],
        ROOT,
    ).stdout
    lines = out.splitlines()
    assert any(line.startswith("plain DataLoader loop") and "1.00x" in line for line in lines)
    assert any(line.startswith("pipeline loop (") for line in lines)
    assert (tmp_path / "speed.json").is_file()
