"""Where a stage's time goes (pipeline.hardware.timing), the CPU threads it takes (``threads`` in
params.yaml), and the stage's one process, MLflow included (pipeline.tracking.stage_run)."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, run
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
        assert set_threads(1) is None and torch.get_num_threads() == 1
        assert set_threads("all") is None and torch.get_num_threads() == available_cpus()
        adaptive = set_threads("adaptive")
        assert adaptive.count == available_cpus() == torch.get_num_threads() and adaptive.tick() is None  # not yet
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

    def broken(client, artifacts):
        raise OSError("disk I/O error")

    monkeypatch.setattr(stage_run.runs, "experiment_id", broken)  # the store fails as the run opens, on its thread
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("BVAE_TRACKING", raising=False)
    with stage_run.StageRun("demo", {"a": 1}) as run:
        assert run.log_metrics({"x": 1.0}) is None and run.run_id is None
    assert not run.enabled
    err = capsys.readouterr().err
    assert err.count("warning: MLflow tracking failed (OSError: disk I/O error)") == 1


def two_cpus() -> str:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs 2 CPUs")
    return f"{cpus[0]},{cpus[1]}"


@contextlib.contextmanager
def spinning(n: int, cpus: str, seconds: float = 900):
    """``n`` busy single-threaded processes on ``cpus`` that are not this process's children
    (a shell starts them and exits), as another user's work would be."""
    spin = (
        f"taskset -c {cpus} {sys.executable} -c 'import time; t = time.time() + {seconds}\nwhile time.time() < t: pass'"
    )
    out = subprocess.run(
        ["bash", "-c", f"for i in $(seq {n}); do {spin} >/dev/null 2>&1 & echo $!; done"],
        capture_output=True,
        text=True,
        check=True,
    )
    pids = [int(p) for p in out.stdout.split()]
    try:
        yield pids
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def train_vae_outputs(project: Path) -> dict[str, bytes]:
    files = [
        project / "models/vae.pt",
        project / "metrics/all/train_vae.json",
        *(project / "plots/train_vae").glob("*"),
    ]
    return {str(f.relative_to(project)): f.read_bytes() for f in files}


@pytest.mark.heavy
def test_the_same_params_give_the_same_bytes_beside_busy_processes(tiny_project):
    """threads: all (the default) is the usable CPUs, whatever else runs: train_vae beside one busy
    process per CPU writes the same bytes as on a quiet machine."""
    cpus = two_cpus()
    run(["dvc", "repro", "prepare"], tiny_project)
    stage = ["taskset", "-c", cpus, "python", "-m", "stages.train_vae"]
    run(stage, tiny_project, BVAE_TRACKING="off")
    quiet = train_vae_outputs(tiny_project)
    with spinning(2, cpus):
        out = run(stage, tiny_project, BVAE_TRACKING="off").stdout
    assert "device: cpu (2 CPU threads, threads: all)" in out
    assert train_vae_outputs(tiny_project) == quiet


@pytest.mark.heavy
def test_adaptive_threads_take_the_cpus_busy_processes_leave_and_say_so(tiny_project):
    """threads: adaptive (opt-in): beside two busy processes on the stage's 2 CPUs, train_vae goes
    down to 1 thread, says why, and its MLflow run records the count of every epoch."""
    cpus = two_cpus()
    params = tiny_project / "params.yaml"
    params.write_text(params.read_text().replace("threads: all", "threads: adaptive"))
    run(["dvc", "repro", "prepare"], tiny_project)
    with spinning(2, cpus):
        out = run(["taskset", "-c", cpus, "python", "-m", "stages.train_vae"], tiny_project).stdout
    assert re.search(r"1 thread \(other processes keep [\d.]+ of 2 CPUs busy\), was 2", out), out
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tiny_project}/mlflow.db")
    (stage,) = client.search_runs(
        [client.get_experiment_by_name("balanced-vae").experiment_id], "tags.`bvae.stage` = 'train_vae'"
    )
    assert stage.data.params["threads"] == "adaptive"
    assert {m.value for m in client.get_metric_history(stage.info.run_id, "train_vae/threads")} == {1.0}


@pytest.mark.heavy
def test_a_stage_is_one_process_mlflow_included(tiny_project):
    """While train_vae trains under `dvc repro` (held mid-epoch by the test hooks: the event is a
    file), the project's processes are DVC's and the stage's one python process, which has no
    children: MLflow runs in it."""
    import psutil

    from conftest import HOOKS_PATH, tool_env

    run(["dvc", "repro", "reference"], tiny_project)
    held = tiny_project / "held"
    env = tool_env(PYTHONPATH=HOOKS_PATH, BVAE_TEST_HOLD_AFTER_EPOCH="1", BVAE_TEST_HOLD_FILE=str(held))
    proc = subprocess.Popen(["dvc", "repro", "train_vae"], cwd=tiny_project, env=env, stdout=subprocess.PIPE, text=True)
    try:
        while not held.exists():
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        stage = psutil.Process(int(held.read_text()))
        assert "stages.train_vae" in " ".join(stage.cmdline()) and stage.children(recursive=True) == []
        ours = [p for p in psutil.Process(proc.pid).children(recursive=True) if "python" in p.name()]
        assert [p.pid for p in ours] == [stage.pid], [p.cmdline() for p in ours]  # besides DVC's own process
        held.unlink()  # go on
        assert proc.wait(timeout=600) == 0
    finally:
        proc.kill()
