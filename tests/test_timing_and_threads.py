"""Where a stage's time goes (pipeline.hardware.timing), the CPU threads it takes (``threads`` in
params.yaml), and the stage's one process, MLflow included (pipeline.tracking.stage_run)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from pipeline.hardware import timing
from pipeline.hardware.threads import available_cpus, set_threads


def test_parts_are_exclusive_and_add_up_to_the_wall_time():
    now = [100.0]  # an injected clock: the test moves it, nothing depends on how fast the machine is

    def wait(seconds):
        now[0] += seconds

    clock = timing.Clock(now=lambda: now[0], started=100.0)
    wait(0.5)  # interpreter start-up and imports
    with clock.part("io"):  # before any work: start-up
        wait(0.02)
    with clock.part("work"):
        wait(0.05)
        with clock.part("tracking"):  # pauses "work"
            wait(0.03)
        wait(0.01)
    with clock.part("checkpoints"):
        wait(0.02)
    wait(0.04)  # outside every part: "other"
    s = clock.summary()
    assert s["wall"] == pytest.approx(0.67) and s["startup"] == pytest.approx(0.52)
    assert s["work"] == pytest.approx(0.06) and s["tracking"] == pytest.approx(0.03)
    assert s["checkpoints"] == pytest.approx(0.02) and s["other"] == pytest.approx(0.04)
    assert s["io"] == 0 and s["startup_io"] == pytest.approx(0.02)  # io before the first work is start-up
    total = s["startup"] + sum(s[k] for k in timing.PARTS) + s["other"]
    assert total == pytest.approx(s["wall"], abs=1e-9)
    assert s["overhead_share"] == pytest.approx(1 - s["work"] / s["wall"])


def test_process_start_is_before_this_process_ran_python():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import time; t = time.time(); from pipeline.hardware import timing; print(t - timing.process_start())",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert 0 < float(out.stdout) < 30  # the interpreter's own start-up counts


def test_a_stage_appends_its_summary_to_bvae_timing(tmp_path):
    path = tmp_path / "timing.jsonl"
    code = "from pipeline.hardware import timing\ntiming.record('demo')\nwith timing.part('work'): pass\n"
    for _ in range(2):
        subprocess.run(
            [sys.executable, "-c", code], check=True, env={**__import__("os").environ, "BVAE_TIMING": str(path)}
        )
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [t["stage"] for t in lines] == ["demo", "demo"] and all(t["wall"] >= t["startup"] > 0 for t in lines)


def test_threads_are_the_params_and_usable_cpus_the_affinity(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "0",
            sys.executable,
            "-c",
            "from pipeline.hardware.threads import available_cpus as a; print(a())",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert out.stdout.strip() == "1"  # the affinity mask, not the host's count


def test_a_failed_mlflow_import_or_store_is_one_warning_and_the_stage_goes_on(monkeypatch, tmp_path, capsys):
    from pipeline.tracking import stage_run

    def broken(self):
        raise OSError("disk I/O error")

    monkeypatch.setattr(stage_run.StageRun, "_open_store", broken)
    (tmp_path / "mlflow.db").write_text("")  # a store that exists: opened on the import thread
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("BVAE_TRACKING", raising=False)
    with stage_run.StageRun("demo", {"a": 1}) as run:
        assert run.log_metrics({"x": 1.0}) is None and run.run_id is None
    assert not run.enabled
    err = capsys.readouterr().err
    assert err.count("warning: MLflow tracking failed (OSError: disk I/O error)") == 1
