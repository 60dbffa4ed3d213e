"""Where a stage's time goes (pipeline.hardware.timing) and how many CPU threads it takes (pipeline.hardware.threads)."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch

from conftest import ROOT, run
from pipeline.hardware import cpu_slots, timing
from pipeline.hardware import threads as hw_threads
from pipeline.hardware.threads import (
    MIN_FLOPS_PER_THREAD,
    available_cpus,
    cpu_share,
    queue_workers,
    step_flops,
    training_threads,
)
from pipeline.models import ConvVAE, DenseVAE


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


@pytest.mark.parametrize("arch", ["dense", "conv", "resnet", "resnet_ref", "infogan", "classifier"])
def test_step_flops_match_torch_flop_counter_and_leave_the_model_alone(arch):
    from torch.utils.flop_counter import FlopCounterMode  # the reference count (imports the compiler: tests only)

    from pipeline.evaluation.classifier import DomainClassifier
    from pipeline.models import InfoGAN, ResNetRef, ResNetVAE

    model, x = {
        "dense": (DenseVAE(8, width=256, depth=3), torch.randn(128, 8)),
        "conv": (ConvVAE(1, 8, 8), torch.rand(64, 1, 8, 8)),
        "resnet": (ResNetVAE(3, 32, 16, base_channels=8), torch.rand(4, 3, 32, 32)),
        "resnet_ref": (ResNetRef(3, 32, 16, base_channels=8, num_scale=3), torch.rand(4, 3, 32, 32)),
        "infogan": (InfoGAN(1, 28, 16), torch.rand(64, 1, 28, 28)),
        "classifier": (DomainClassifier(1, 10, 64), torch.rand(64, 1, 8, 8)),
    }[arch]
    model.eval()
    with torch.no_grad(), torch.random.fork_rng(devices=[]), FlopCounterMode(display=False) as counter:
        model(x)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    # the spectral norm's power iteration (matrix-vector products once a forward, not per image) is left out
    assert step_flops(model, x) == pytest.approx(
        3 * counter.get_total_flops(), rel=0.005 if arch == "infogan" else 1e-12
    )
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items()) and torch.equal(
        rng, torch.get_rng_state()
    )
    assert model.training


def test_threads_follow_the_work_the_share_and_bvae_threads(monkeypatch):
    monkeypatch.delenv("BVAE_THREADS", raising=False)
    share = cpu_share()
    assert share == max(1, available_cpus() // max(1, queue_workers()))
    assert training_threads(MIN_FLOPS_PER_THREAD / 2) == 1  # too small to split
    assert training_threads(1e15) == share  # large: the whole share
    assert training_threads(2 * MIN_FLOPS_PER_THREAD) == min(2, share)
    monkeypatch.setenv("BVAE_THREADS", "3")
    assert cpu_share() == 3 and training_threads(1.0) == 3  # the override wins both ways


def test_queue_workers_are_counted_from_their_command_lines(tmp_path):
    cmdlines = {  # as /proc/<pid>/cmdline holds them: NUL-separated arguments
        "101": b"/venv/bin/python\0/venv/bin/dvc\0exp\0queue-worker\0dvc-exp-3f2a1c-1@localhost\0--clean\0",
        "102": b"/venv/bin/python\0/venv/bin/dvc\0exp\0queue-worker\0dvc-exp-3f2a1c-2@localhost\0",
        "103": b"/venv/bin/python\0/venv/bin/dvc\0exp\0run\0--queue\0",
        "104": b"python\0-m\0stages.train_vae\0",
    }
    for pid, cmdline in cmdlines.items():
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "cmdline").write_bytes(cmdline)
    (tmp_path / "self").mkdir()
    assert queue_workers(tmp_path) == 2
    assert queue_workers(tmp_path / "nowhere") == 0


def test_a_stage_runs_on_without_tracking_when_no_tracking_process_can_start(monkeypatch, tmp_path, capsys):
    from pipeline.tracking import stage_run

    def no_processes(*args, **kwargs):
        raise OSError("this platform lacks a functioning sem_open implementation")

    monkeypatch.setattr(stage_run, "Worker", no_processes)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("BVAE_TRACKING", raising=False)
    with stage_run.StageRun("demo", {"a": 1}) as run:
        assert run.log_metrics({"x": 1.0}) is None and run.run_id is None
    assert not run.enabled
    assert "warning: cannot start the MLflow tracking process (this platform lacks" in capsys.readouterr().err


def two_cpus() -> str:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs 2 CPUs")
    return f"{cpus[0]},{cpus[1]}"


@contextlib.contextmanager
def spinning(n: int, cpus: str, seconds: float = 600):
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


def test_load_counts_other_processes_but_not_this_one_or_its_children():
    cpus = two_cpus()
    script = (
        "import subprocess, sys, time\nfrom pipeline.hardware.cpu_load import Load\nload = Load()\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; t = time.time() + 2\\nwhile time.time() < t: pass'])\n"
        "time.sleep(2)\nchild.wait()\nprint(load.cpus, load.others())"
    )
    with spinning(1, cpus):
        out = subprocess.run(
            ["taskset", "-c", cpus, sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout.split()
    cpus_seen, others = float(out[0]), float(out[1])
    assert cpus_seen == 2
    assert 0.7 < others < 1.6  # the spinner (1 CPU), not the child (another 1) nor the measuring process


@pytest.mark.parametrize(
    "free, count, cap, margin, expect",
    [
        (2.0, 2, 2, 0.6, 2),
        (1.0, 2, 2, 0.6, 1),
        (1.5, 2, 2, 0.6, 2),
        (1.3, 2, 2, 0.6, 1),  # down past the margin only
        (1.5, 1, 2, 0.6, 1),
        (1.7, 1, 2, 0.6, 2),
        (0.2, 2, 2, 0.6, 1),
        (7.6, 4, 8, 0.6, 8),
        (3.9, 2, 2, 0.0, 2),
    ],
)
def test_the_thread_count_follows_the_free_cpus_with_a_margin(monkeypatch, free, count, cap, margin, expect):
    monkeypatch.delenv("BVAE_THREADS", raising=False)
    threads = object.__new__(hw_threads.Threads)
    threads.cap, threads.count, threads.others = cap, count, None
    threads.load = SimpleNamespace(cpus=4.0, others=lambda: 4.0 - free)
    threads._measure(margin)
    assert threads.count == expect


def test_a_stage_beside_busy_processes_takes_the_cpus_they_leave(tiny_project):
    """Two busy processes on the stage's 2 CPUs: train_vae, whose default step would take
    2 threads, says it takes 1 and why, and its MLflow run records 1 thread in every epoch."""
    cpus = two_cpus()
    run(["dvc", "repro", "prepare"], tiny_project)
    with spinning(2, cpus):
        out = run(["taskset", "-c", cpus, "python", "-m", "stages.train_vae"], tiny_project).stdout
    assert re.search(r"train_vae: .* 1 thread \(other processes keep [\d.]+ of 2 CPUs busy\) \(\d+ MFLOP", out), out
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tiny_project}/mlflow.db")
    (stage,) = client.search_runs(
        [client.get_experiment_by_name("balanced-vae").experiment_id], "tags.`bvae.stage` = 'train_vae'"
    )
    assert stage.data.tags["bvae.threads"] == "1"
    assert {m.value for m in client.get_metric_history(stage.info.run_id, "train_vae/threads")} == {1.0}


HOLD = """
import sys
from pathlib import Path
from pipeline.hardware import cpu_slots
fd = cpu_slots.hold(sys.argv[1], 1, Path(sys.argv[2]))
print("held" if fd is not None else "no slot", flush=True)
if sys.stdin.readline() == "keep\\n":  # hold the slot until told to end, keeping it for the next stage or not
    cpu_slots.keep_for_next(fd, Path(sys.argv[2]))
"""


def test_queue_stages_beyond_the_cpus_wait_for_a_slot_and_get_it_when_one_ends(tmp_path):
    exps = tmp_path / ".dvc" / "tmp" / "exps"
    copies = [exps / "tmpa", exps / "tmpb"]
    for c in copies:
        c.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("BVAE_THREADS", "LOCAL_WORLD_SIZE")}
    start = lambda name, cwd: subprocess.Popen(
        [sys.executable, "-c", HOLD, name, str(cwd)],
        cwd=ROOT,
        env=env,  # noqa: E731
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = start("train_vae", copies[0])
    assert first.stdout.readline() == "held\n"  # the event: the first stage has the one slot
    second = start("evaluate", copies[1])
    try:
        waiting = second.stderr.readline()
        assert waiting.startswith("evaluate: waiting for a CPU: this DVC queue has more stages running than its 1 CPU;")
        assert second.poll() is None
        first.communicate("\n", timeout=60)  # the first stage ends: the kernel frees its slot
        out, err = second.communicate("\n", timeout=60)
        assert out == "held\n" and re.match(r"evaluate: got a CPU after \d+\.\d s", err)
    finally:
        for p in (first, second):
            p.kill()
    assert (tmp_path / ".dvc" / "tmp" / "cpu-slots" / "0.lock").is_file()
    # outside a queue's copies, or with BVAE_THREADS set, a stage takes no slot
    outside = subprocess.run(
        [sys.executable, "-c", HOLD, "train_vae", str(tmp_path)],
        cwd=ROOT,
        env=env,
        input="\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    pinned = subprocess.run(
        [sys.executable, "-c", HOLD, "train_vae", str(copies[0])],
        cwd=ROOT,
        env=env | {"BVAE_THREADS": "1"},
        input="\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert outside.stdout == pinned.stdout == "no slot\n"


def test_an_experiment_keeps_its_cpu_for_its_next_stage(tmp_path):
    """A stage that ends well keeps its slot for its experiment's next stage (KEEP seconds):
    a waiting stage of another experiment passes it by, the same experiment's next stage
    takes it at once, and once that one ends without keeping it, the other gets it."""
    exps = tmp_path / ".dvc" / "tmp" / "exps"
    a, b = exps / "tmpa", exps / "tmpb"
    for c in (a, b):
        c.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("BVAE_THREADS", "LOCAL_WORLD_SIZE")}

    def start(name, cwd):
        return subprocess.Popen(
            [sys.executable, "-c", HOLD, name, str(cwd)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    procs = [start("train_vae", a)]
    try:
        assert procs[0].stdout.readline() == "held\n"
        procs[0].communicate("keep\n", timeout=60)  # train_vae of a ends well: its slot is kept for a
        procs.append(start("train_vae", b))  # b's stage finds the one slot free but kept for a
        assert procs[1].stderr.readline().startswith("train_vae: waiting for a CPU")
        procs.append(start("train_stage2", a))  # a's next stage takes it at once
        assert procs[2].stdout.readline() == "held\n" and procs[1].poll() is None
        procs[2].communicate("\n", timeout=60)  # ends without keeping it (as evaluate, the last, does)
        out, err = procs[1].communicate("\n", timeout=60)
        assert out == "held\n" and re.search(r"train_vae: got a CPU after \d+\.\d s", err)
    finally:
        for p in procs:
            p.kill()
    slot = tmp_path / ".dvc" / "tmp" / "cpu-slots" / "0.lock"
    slot.write_text(f"{a}\n{time.time() - cpu_slots.KEEP - 1}")  # kept for a, but longer ago than KEEP
    late = subprocess.run(
        [sys.executable, "-c", HOLD, "train_vae", str(b)], cwd=ROOT, env=env, input="\n", capture_output=True, text=True
    )
    assert late.stdout == "held\n" and late.stderr == ""  # not waiting: the keep has expired
