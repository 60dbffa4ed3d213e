"""Fault injection with the real tools: SIGKILL and Ctrl-C in the middle of training, a NaN
at a chosen step, a tracking server that is closed or dies mid-run, messy data folders.
Each checks the message, the exit code, and that nothing half-written is left."""

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import yaml
from click.testing import CliRunner
from mlflow import MlflowClient

from conftest import HOOKS_PATH, TINY, free_port, make_project, merge, run, tool_env
from pipeline.files import save_torch

pytestmark = pytest.mark.heavy  # end-to-end runs of the real DVC pipeline (`pytest -m heavy`; CI runs them)

PARAMS = merge(
    TINY, {"prepare": {"limit_train": None}, "train": {"epochs": 4}}
)  # 1,293 training digits, 21 steps/epoch
CKPT = "checkpoints/train_vae.pt"


def checkpoint_epoch(project: Path) -> int:
    try:
        return torch.load(project / CKPT, weights_only=False)["training"]["epoch"]
    except Exception:  # absent (or, never with atomic writes, torn)
        return 0


def start_and_stop(project: Path, cmd: list[str], sig: int, after_epoch: int, **env) -> subprocess.Popen:
    """Start ``cmd`` in its own process group; send ``sig`` to the group and to every
    descendant (torchrun starts its workers in their own sessions) once training, three
    steps into epoch ``after_epoch + 1`` (after epoch ``after_epoch``'s checkpoint), has
    said so in a file and waits (``BVAE_TEST_HOLD_AFTER_EPOCH``, tests/hooks): the signal always lands
    mid-epoch, however loaded the machine."""
    held = project / "held"
    held.unlink(missing_ok=True)
    (project / CKPT).unlink(missing_ok=True)  # a finished training stays until a later stage: train afresh
    env |= {"PYTHONPATH": HOOKS_PATH, "BVAE_TEST_HOLD_AFTER_EPOCH": str(after_epoch), "BVAE_TEST_HOLD_FILE": str(held)}
    proc = subprocess.Popen(
        cmd,
        cwd=project,
        env=tool_env(**env),
        start_new_session=True,
        # Ctrl-C's default action, though this test run may have started with SIGINT ignored
        # (a background job of a non-interactive shell): Python then never raises KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 300
    while not held.exists():  # the event: a file, polled
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    assert checkpoint_epoch(project) == after_epoch
    descendants = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, sig)
    for child in descendants:
        try:
            child.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=120)
    return proc


def outputs(project: Path) -> dict[str, bytes]:
    """Every output of train_vae: {path: bytes}."""
    files = [
        project / "models/vae.pt",
        project / "metrics/train_vae.json",
        project / "metrics/all/train_vae.json",
        *sorted((project / "plots/train_vae").glob("*")),
    ]
    return {str(f.relative_to(project)): f.read_bytes() for f in files if f.is_file()}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict]:
    """A project whose train_vae ran once uninterrupted: (path, its outputs, :func:`outputs`)."""
    project = make_project(tmp_path_factory.mktemp("faults"), PARAMS)
    run(["dvc", "repro", "train_vae"], project)
    results = outputs(project)
    assert len(results) == 9 and checkpoint_epoch(project) == PARAMS["train"]["epochs"]  # kept: no later stage ran
    return project, results


def stage_runs(project: Path, stage: str):
    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    exp = client.get_experiment_by_name("balanced-vae")
    return client, client.search_runs([exp.experiment_id], f"tags.`bvae.stage` = '{stage}'")


def test_sigkill_mid_epoch_then_dvc_repro_resumes_to_the_same_result(project):
    project, expected = project
    _, before = stage_runs(project, "train_vae")
    proc = start_and_stop(project, ["dvc", "repro", "-f", "train_vae"], signal.SIGKILL, after_epoch=3)
    assert proc.returncode == -signal.SIGKILL
    assert not (project / "models/vae.pt").exists()  # DVC removed the old output; nothing half-written in its place
    out = run(["dvc", "repro", "train_vae"], project)
    assert "train_vae: resuming from checkpoints/train_vae.pt after epoch" in out.stdout
    assert outputs(project) == expected  # the same model, metrics, history and plots as without the kill
    client, after = stage_runs(project, "train_vae")
    new = [r for r in after if r.info.run_id not in {b.info.run_id for b in before}]
    assert len(new) == 1 and new[0].info.status == "FINISHED"  # the killed run was continued, not duplicated
    steps = sorted(m.step for m in client.get_metric_history(new[0].info.run_id, "train_vae/loss"))
    assert steps == list(range(1, PARAMS["train"]["epochs"] + 1))  # every epoch logged once, none twice


@pytest.mark.parametrize(
    ("sig", "code", "said"),
    [
        (signal.SIGINT, 130, "interrupted"),  # Ctrl-C
        (signal.SIGTERM, 143, "terminated (SIGTERM)"),
    ],
)  # timeout, SLURM, k8s
def test_ctrl_c_or_sigterm_saves_a_checkpoint_and_exits_then_resumes(project, sig, code, said):
    project, expected = project
    proc = start_and_stop(project, ["python", "-m", "stages.train_vae"], sig, after_epoch=2)
    _, err = proc.communicate()
    assert proc.returncode == code
    assert err.strip().splitlines()[-1].startswith(f"{said}: train_vae stopped; checkpoints/train_vae.pt holds epoch")
    assert "Traceback" not in err
    assert checkpoint_epoch(project) >= 2
    client, runs = stage_runs(project, "train_vae")
    latest = max(runs, key=lambda r: r.info.start_time)
    parent = client.get_run(latest.data.tags["mlflow.parentRunId"])
    assert (latest.info.status, parent.info.status) == ("KILLED", "KILLED")  # the parent follows its stage
    out = run(["python", "-m", "stages.train_vae"], project)
    assert "resuming from checkpoints/train_vae.pt" in out.stdout
    assert outputs(project) == expected
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"  # its last stage finished


def test_a_stop_after_the_last_epoch_resumes_to_every_output_of_a_fresh_run(project):
    project, expected = project
    start_and_stop(
        project,
        ["python", "-m", "stages.train_vae"],
        signal.SIGKILL,
        after_epoch=PARAMS["train"]["epochs"],
        BVAE_TRACKING="off",
    )
    for f in expected:
        (project / f).unlink(missing_ok=True)  # as DVC removes a stage's outputs before it runs it
    out = run(["python", "-m", "stages.train_vae"], project, BVAE_TRACKING="off")
    assert f"resuming from checkpoints/train_vae.pt after epoch {PARAMS['train']['epochs']}" in out.stdout
    assert outputs(project) == expected


def stage_status(project: Path) -> tuple[str, str]:
    """The MLflow status of the latest train_vae stage run and of its parent."""
    client, runs = stage_runs(project, "train_vae")
    latest = max(runs, key=lambda r: r.info.start_time)
    return latest.info.status, client.get_run(latest.data.tags["mlflow.parentRunId"]).info.status


@pytest.mark.timeout(2400)  # 11 stops and 11 reruns: 190 s on a quiet machine, 880 s beside 3 busy processes
def test_sigterm_at_any_moment_of_the_last_second_is_recorded_truly_and_keeps_the_training(project):
    """SIGTERM to the whole `dvc repro` (as `timeout` or SLURM sends it) at 11 moments from
    when models/vae.pt appears (the event, polled) to a second after. Each time: the stage's
    MLflow run and its parent are FINISHED only beside complete outputs, else KILLED; a stopped
    stage says the documented line; the finished training is never thrown away, so the rerun
    writes the same outputs without training again."""
    project, expected = project
    rows = []
    for offset in [i / 10 for i in range(11)]:
        (project / CKPT).unlink(missing_ok=True)  # train the 4 epochs afresh
        for f in expected:
            (project / f).unlink()  # as DVC does first: the event below is then the stage's own write
        proc = subprocess.Popen(
            ["dvc", "repro", "-f", "--no-run-cache", "train_vae"],  # run it: DVC's run cache has these outputs
            cwd=project,
            env=tool_env(),
            start_new_session=True,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.time() + 300
        while not (project / "models/vae.pt").exists():  # the event: the stage's first output written
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.01)
        time.sleep(offset)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=120)  # the pipes close when the stage, too, has ended
        complete = outputs(project) == expected
        status = stage_status(project)
        kept = checkpoint_epoch(project)
        stopped = [line for line in err.splitlines() if line.startswith("terminated (SIGTERM)")]
        again = run(["dvc", "repro", "--no-run-cache", "train_vae"], project)
        trained = "train_vae: resuming" not in again.stdout and "Running stage 'train_vae'" in again.stdout
        rows.append((offset, proc.returncode, *status, complete, kept, bool(stopped), trained))
        assert "Traceback" not in err, err
        assert status in ({("FINISHED", "FINISHED")} if complete else {("KILLED", "KILLED")}), (
            rows[-1],
            err[-3000:].replace("\r", "\n").splitlines()[-8:],
        )
        if stopped:  # one line, then one naming the git command that restores the committed outputs DVC removed
            (line,) = stopped
            assert line == (
                "terminated (SIGTERM): train_vae stopped; checkpoints/train_vae.pt holds its training: dvc repro resumes"
            ), err
            after = err.splitlines()[err.splitlines().index(line) + 1]
            assert after.startswith("note: train_vae's committed outputs are gone") and "`git checkout -- " in after
        assert kept == PARAMS["train"]["epochs"], rows[-1]  # the finished training was kept
        assert not trained, again.stdout  # restored from it, never trained from epoch 1
        assert outputs(project) == expected and stage_status(project) == ("FINISHED", "FINISHED")
    table = ["offset s | dvc exit | stage run | parent | outputs complete | checkpoint epoch | said | trained again"]
    table += [" | ".join(str(v) for v in row) for row in rows]
    print("\n".join(table))


def test_a_checkpoint_of_other_params_is_not_resumed(project, tmp_path):
    project, _ = project
    start_and_stop(project, ["python", "-m", "stages.train_vae"], signal.SIGKILL, after_epoch=1, BVAE_TRACKING="off")
    params = tmp_path / "params.yaml"
    params.write_text((project / "params.yaml").read_text().replace("epochs: 4", "epochs: 2"))
    out = run(["python", "-m", "stages.train_vae", "--params", str(params)], project, BVAE_TRACKING="off")
    assert "checkpoint checkpoints/train_vae.pt: written with other params; starting from epoch 1" in out.stdout
    assert "resuming" not in out.stdout
    assert len((project / "plots/train_vae/history.csv").read_text().splitlines()) == 3  # header + 2 epochs


def test_a_checkpoint_written_by_other_code_is_not_resumed(project):
    """The resume of the same code is byte-identical (test_sigkill_mid_epoch_...); after an edit
    of one line of a module the stage runs, DVC re-runs it and it starts over, saying why."""
    project, expected = project
    start_and_stop(project, ["dvc", "repro", "-f", "train_vae"], signal.SIGKILL, after_epoch=2, BVAE_TRACKING="off")
    module = project / "pipeline/balance/running_gamma.py"
    original = module.read_text()
    try:
        module.write_text(original.replace("the seed paper.", "the paper this tool starts from.", 1))  # one line
        assert module.read_text() != original
        out = run(["dvc", "repro", "train_vae"], project, BVAE_TRACKING="off")
        assert "checkpoint checkpoints/train_vae.pt: written by other code; starting from epoch 1" in out.stdout
        assert "resuming" not in out.stdout
        assert outputs(project) == expected  # a docstring changes no number
    finally:
        module.write_text(original)


def test_nan_at_a_chosen_step_stops_naming_epoch_step_and_checkpoint(tmp_path):
    project = make_project(tmp_path, PARAMS)
    run(["dvc", "repro", "prepare"], project, BVAE_TRACKING="off")
    committed = (project / "metrics/train_vae.json").read_text()  # metrics files are kept in git
    out = run(
        ["python", "-m", "stages.train_vae"],
        project,
        check=False,
        PYTHONPATH=HOOKS_PATH,
        BVAE_TEST_NAN_STEP="30",
        BVAE_TRACKING="off",
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        "error: train_vae: the loss became nan at epoch 2, step 30; the last good checkpoint is "
        "checkpoints/train_vae.pt (epoch 1). Nothing was written: lower the learning rate or change the balance "
        "params, then dvc repro"
    )
    assert checkpoint_epoch(project) == 1
    assert not (project / "models/vae.pt").exists()
    assert (project / "metrics/train_vae.json").read_text() == committed
    assert [p.name for p in (project / "models").iterdir()] == [".gitignore"]  # no temp files either


def test_closed_tracking_port_is_detected_at_the_first_connection(tmp_path):
    """The refused connection itself is the error (no retries with back-off: MLflow's client
    would retry for minutes and then speak of "Max retries")."""
    project = make_project(tmp_path, PARAMS)
    out = run(
        ["python", "-m", "stages.prepare"], project, check=False, MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}"
    )
    assert out.returncode == 2
    assert "is unreachable ([Errno 111] Connection refused)" in out.stderr and "retries" not in out.stderr
    assert "is unreachable" in out.stderr and "BVAE_TRACKING=off" in out.stderr and "Traceback" not in out.stderr
    assert not (project / "data/prepared").exists() and not (project / "mlflow.db").exists()


def test_a_tracking_server_that_never_answers_is_one_line_after_one_try(tmp_path):
    """Two connections (the port check, then /health, which times out once) and no retry."""
    project = make_project(tmp_path, PARAMS)
    with socket.socket() as silent:  # the kernel accepts connections to a listening socket; nobody answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        out = run(
            ["python", "-m", "stages.prepare"],
            project,
            check=False,
            MLFLOW_TRACKING_URI=f"http://127.0.0.1:{silent.getsockname()[1]}",
        )
        silent.setblocking(False)
        connections = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                silent.accept()[0].close()
                connections += 1
    assert out.returncode == 2 and connections == 2, (connections, out.stderr)
    (line,) = out.stderr.strip().splitlines()
    assert "accepts connections but its /health did not answer within 5 s" in line and "BVAE_TRACKING=off" in line
    assert not (project / "data/prepared").exists()


def test_a_tracking_server_whose_api_hangs_after_a_healthy_health_is_one_line_after_one_try(tmp_path):
    """One /health, one API request that times out, and no retry."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    release, requests = threading.Event(), []

    class HealthyButStuck(BaseHTTPRequestHandler):  # /health answers; the API waits on a database that hangs
        def do_GET(self):
            requests.append(self.path.split("?")[0])
            if self.path != "/health":
                release.wait(120)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), HealthyButStuck)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    project = make_project(tmp_path, PARAMS)
    try:
        out = run(
            ["python", "-m", "stages.prepare"],
            project,
            check=False,
            MLFLOW_TRACKING_URI=f"http://127.0.0.1:{server.server_address[1]}",
        )
    finally:
        release.set()
        server.shutdown()
    assert out.returncode == 2 and len(requests) == 2 and requests[0] == "/health", (requests, out.stderr)
    (line,) = out.stderr.strip().splitlines()
    assert (
        "accepts connections but its API (the store behind it) did not answer, though /health did, within 5 s" in line
    )
    assert "BVAE_TRACKING=off" in line and not (project / "data/prepared").exists()


@pytest.fixture(params=["new", "used"])
def read_only_store(tmp_path, request) -> str:
    """A sqlite MLflow store whose file cannot be written (a bind mount as root, else its mode):
    new (no experiment yet) or used (the experiment exists: the stage's run cannot be added)."""
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    client = MlflowClient(f"sqlite:///{db}")
    client.search_experiments()  # creates it
    if request.param == "used":
        client.create_experiment("balanced-vae")
    if os.geteuid() != 0:
        db.chmod(0o444)
        yield f"sqlite:///{db}"
        return
    if subprocess.run(["mount", "--bind", str(db), str(db)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount here (needs the right to mount)")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(db)], check=True, capture_output=True)
        yield f"sqlite:///{db}"
    finally:
        subprocess.run(["umount", str(db)], check=True)


def test_a_read_only_store_is_one_warning_line_and_the_stage_finishes(tmp_path, read_only_store):
    project = make_project(tmp_path / "p", PARAMS)
    out = run(["python", "-m", "stages.prepare"], project, MLFLOW_TRACKING_URI=read_only_store)
    assert out.stderr.strip().splitlines() == [
        "warning: MLflow tracking failed (OperationalError: attempt to write a readonly database); continuing without "
        "tracking, the stage's outputs are still written"
    ]
    assert (project / "data/prepared/train.pt").is_file()


def test_artifacts_go_beside_a_shared_store_or_to_the_configured_root_never_into_a_clone(tmp_path):
    shared = tmp_path / "shared"
    first, second = make_project(tmp_path / "a", TINY), make_project(tmp_path / "b", TINY)
    store = f"sqlite:///{shared / 'mlflow.db'}"
    for project in (first, second):
        run(["python", "-m", "stages.prepare"], project, MLFLOW_TRACKING_URI=store)
        assert not (project / "mlruns").exists() and not (project / "mlartifacts").exists()
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("balanced-vae")
    assert exp.artifact_location == (shared / "mlartifacts").as_uri()
    for stage_run in client.search_runs([exp.experiment_id]):
        assert stage_run.info.artifact_uri.startswith((shared / "mlartifacts").as_uri())
    assert list((shared / "mlartifacts").rglob("train_images.png"))  # both prepares' grids are there
    configured = tmp_path / "artifacts"
    run(
        ["python", "-m", "stages.prepare"],
        first,
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'other.db'}",
        MLFLOW_DEFAULT_ARTIFACT_ROOT=str(configured),
    )
    assert list(configured.rglob("train_images.png"))
    out = run(
        ["python", "-m", "stages.prepare"],
        first,
        check=False,
        MLFLOW_TRACKING_URI="postgresql://user@127.0.0.1:1/mlflow",
    )  # a database with no folder beside it
    assert out.returncode == 2 and "set MLFLOW_DEFAULT_ARTIFACT_ROOT" in out.stderr


@pytest.mark.slow  # starts a real mlflow server (about a minute): `bash scripts/test.sh -m slow`
def test_tracking_server_dying_mid_training_keeps_the_model(tmp_path):
    project = make_project(tmp_path, PARAMS)
    run(["dvc", "repro", "prepare"], project, BVAE_TRACKING="off")
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path}/server.db",
            "--default-artifact-root",
            str(tmp_path / "art"),
            "--workers",
            "1",
        ],
        env=tool_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline, "mlflow server did not start"
                time.sleep(0.5)
        stage = subprocess.Popen(
            ["python", "-m", "stages.train_vae"],
            cwd=project,
            text=True,
            env=tool_env(MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        while checkpoint_epoch(project) < 2:
            assert stage.poll() is None, stage.communicate()
            time.sleep(0.05)
        os.killpg(server.pid, signal.SIGKILL)
        _, err = stage.communicate(timeout=600)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
    assert stage.returncode == 0, err
    assert "warning: MLflow tracking failed" in err
    assert (project / "models/vae.pt").is_file() and (project / "metrics/train_vae.json").is_file()


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "prepare.data_root: "),
        ("empty", "no images found in"),
        ("unreadable", "too few readable images in"),
        ("fail", "1 unreadable image(s): 0.png"),
    ],
)
def test_messy_folders_stop_prepare_with_one_message(tmp_path, monkeypatch, case, message):
    import yaml

    from stages import prepare

    images = tmp_path / "images"
    images.mkdir()
    if case in ("unreadable", "fail"):
        for i in range(6):
            (images / f"{i}.png").write_bytes(os.urandom(200) if case == "unreadable" or i == 0 else b"")
    if case == "fail":
        from PIL import Image

        for i in range(1, 6):
            Image.new("RGB", (9, 9), (i, 0, 0)).save(images / f"{i}.png")
    root = str(tmp_path / "nope") if case == "missing" else str(images)
    params = merge(
        yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text()),
        {
            "prepare": {
                "dataset": "folder",
                "data_root": root,
                "image_size": 8,
                "bad_images": "fail" if case == "fail" else "skip",
            },
            "reference": {"features": "inception"},
        },
    )
    work = tmp_path / "work"
    work.mkdir()
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(work)
    monkeypatch.setenv("BVAE_TRACKING", "off")
    result = CliRunner().invoke(prepare.main, [])
    assert result.exit_code == 2, result.output
    last = result.stderr.strip().splitlines()[-1]  # after the decoding progress bar
    assert message in last and last.startswith("error: ")
    assert not (work / "data").exists()  # nothing written


def test_atomic_writes_leave_the_old_file_or_none(tmp_path):
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("interrupted while writing")

    path = tmp_path / "model.pt"
    save_torch({"a": 1}, path)
    with pytest.raises(RuntimeError):
        save_torch({"a": Unpicklable()}, path)
    assert torch.load(path) == {"a": 1} and [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)  # usual permissions, not mkstemp's
    first = path.read_bytes()
    save_torch({"a": 1}, path)
    assert path.read_bytes() == first  # same content, same bytes: DVC sees the same hash


FIRST_USE = """
import os, sys, time
from pathlib import Path
from pipeline.tracking.stage_run import StageRun
import mlflow  # imported before the start line, so that all open the store at once
folder, i = Path(sys.argv[1]), sys.argv[2]
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder}/mlflow.db"
(folder / f"ready{i}").touch()
while not (folder / "go").exists():
    time.sleep(0.005)
with StageRun("prepare", {"prepare": {"seed": int(i)}}) as run:
    run.log_metrics({"x": 1.0})
print(run.enabled, flush=True)
"""


def first_use(folder: Path, n: int) -> list[str]:
    """``n`` processes that open one fresh sqlite store at the same moment; their answers (the
    last line of each). Without :func:`pipeline.tracking.store.opening` all 4 failed, 3 times of 3."""
    folder.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FIRST_USE, str(folder), str(i)],
            cwd=Path(__file__).parents[1],
            env=tool_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    deadline = time.time() + 120
    while len(list(folder.glob("ready*"))) < n:  # the event: every process has imported MLflow
        assert time.time() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.01)
    (folder / "go").touch()
    return [p.communicate(timeout=120)[0].strip().splitlines()[-1] for p in procs]


def test_processes_starting_together_on_a_fresh_sqlite_store_all_land(tmp_path):
    assert first_use(tmp_path / "store", 4) == ["True"] * 4
    client = MlflowClient(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("balanced-vae")
    assert len(client.search_runs([exp.experiment_id], "tags.`bvae.role` = 'stage'")) == 4


def hints(line: str) -> list[list[str]]:
    """The commands a message tells the user to run (its `...` parts), as argument lists."""
    return [shlex.split(cmd) for cmd in line.split("`")[1::2]]


def test_missing_or_corrupt_inputs_are_one_line_naming_the_file_and_fixes_that_work_as_written(tmp_path):
    project = make_project(tmp_path, merge(TINY, {"train": {"epochs": 1}}))
    out = run(["python", "-m", "stages.train_vae"], project, check=False, BVAE_TRACKING="off")  # a fresh clone
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "error: prepared train images not found at data/prepared/train.pt: run the stages before this one first "
        "(`dvc repro prepare`)"
    ]
    (fix,) = hints(out.stderr)
    run(fix, project, BVAE_TRACKING="off")
    run(
        ["dvc", "repro", "train_vae"], project, BVAE_TRACKING="off"
    )  # puts prepare's and train_vae's outputs in the cache
    for path, stage, consumer, what in [
        ("data/prepared/train.pt", "prepare", "train_vae", "prepared train images"),
        ("models/vae.pt", "train_vae", "train_stage2", "stage-1 model"),
    ]:
        good = (project / path).read_bytes()
        (project / path).write_bytes(good[:1000])  # truncated
        out = run(["python", "-m", f"stages.{consumer}"], project, check=False, BVAE_TRACKING="off")
        (line,) = out.stderr.strip().splitlines()
        assert out.returncode == 2 and line.startswith(
            f"error: {path} is not a readable {what} file (truncated or corrupt? "
        )
        assert line.endswith(
            f"`dvc checkout --force {path}` restores it from the DVC cache, or `dvc repro -f {stage}` makes it again"
        )
        for command in hints(line):
            (project / path).write_bytes(good[:1000])
            run(command, project, BVAE_TRACKING="off")
            assert (project / path).read_bytes() == good, command


@pytest.mark.slow  # about 40 s of stage start-ups: `bash scripts/test.sh -m slow`
def test_values_the_data_or_the_machine_cannot_hold_stop_before_the_work(tmp_path):
    project = make_project(tmp_path / "p", merge(TINY, {"train": {"epochs": 1}}))
    run(["dvc", "repro", "train_vae"], project, BVAE_TRACKING="off")

    def stops(stage: str, change: dict, message: str) -> None:
        params = tmp_path / "params.yaml"
        params.write_text(yaml.safe_dump(merge(yaml.safe_load((project / "params.yaml").read_text()), change)))
        before = sorted(p.relative_to(project) for p in project.rglob("*") if ".git" not in p.parts)
        out = run(
            ["python", "-m", f"stages.{stage}", "--params", str(params)], project, check=False, BVAE_TRACKING="off"
        )
        assert out.returncode == 2, out.stderr
        assert "epoch" not in out.stdout + out.stderr and "images/s" not in out.stdout  # before the work: no progress
        (line,) = out.stderr.strip().splitlines()
        assert line.startswith("error: ") and message in line, line
        assert (
            sorted(p.relative_to(project) for p in project.rglob("*") if ".git" not in p.parts) == before
        )  # nothing written

    stops(
        "train_stage2",
        {"stage2": {"gmm": {"components": 5000}}},
        "stage2.gmm.components: 5000 is more than the 270 latent codes the mixture is fitted on",
    )
    stops("train_vae", {"train": {"latent_dim": 100_000_000}}, "train.latent_dim: 100,000,000 needs about ")
    stops("train_stage2", {"stage2": {"width": 10_000_000}}, "stage2.width: 10,000,000 needs about ")
    stops("evaluate", {"evaluate": {"num_samples": 100_000_000}}, "evaluate.num_samples: 100,000,000 needs about ")
    stops("evaluate", {"evaluate": {"nll_samples": 100_000_000}}, "evaluate.nll_samples: 100,000,000 needs about ")
    stops(
        "prepare",
        {"prepare": {"image_size": 100_000}},
        "prepare.image_size: 100,000 needs about 120 GB for one RGB image in float32",
    )
    few = {
        "prepare": {"limit_train": None, "limit_test": None, "test_fraction": 0.001}
    }  # 2 of the 1,797 digits; 180 of the rest validate
    params = tmp_path / "few.yaml"
    params.write_text(yaml.safe_dump(merge(yaml.safe_load((project / "params.yaml").read_text()), few)))
    run(["python", "-m", "stages.prepare", "--params", str(params)], project, BVAE_TRACKING="off")
    stops(
        "reference",
        few,
        "data/prepared: 1615 training and 2 test images; FID, KID and precision/recall need at least 4 of each",
    )


@pytest.mark.parametrize("edit", ["value", "broken"])
def test_params_edited_while_a_stage_runs_fail_it_keep_its_training_and_dvc_records_nothing(tmp_path, edit):
    project = make_project(tmp_path, TINY)
    locked = yaml.safe_load((project / "dvc.lock").read_text())["stages"].get("train_vae")  # the committed run's
    held = project / "held"
    env = tool_env(PYTHONPATH=HOOKS_PATH, BVAE_TEST_HOLD_AFTER_EPOCH="1", BVAE_TEST_HOLD_FILE=str(held))
    proc = subprocess.Popen(
        ["dvc", "repro", "train_vae"], cwd=project, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.time() + 300
    while not held.exists():  # the event: train_vae is in its second epoch, holding
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    params = project / "params.yaml"
    original = params.read_text()
    edited = (
        original.replace("lr: 0.001", "lr: 0.0005", 1) if edit == "value" else original + "train: [\n"
    )  # half saved
    params.write_text(edited)
    held.unlink()  # go on
    out, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    (line,) = [x for x in err.splitlines() if x.startswith("error: ")]
    if edit == "value":
        assert line == (
            "error: params.yaml changed while train_vae ran (train.lr: 0.001 -> 0.0005): its outputs follow "
            "the values it read at its start, so it fails and DVC records nothing; `dvc repro` runs it "
            "again (checkpoints/train_vae.pt keeps its training: with the old values back it finishes "
            "without training again)"
        )
    else:
        assert line.startswith("error: params.yaml changed while train_vae ran and is not valid YAML at line ")
        assert int(line.split("at line ")[1].split(",")[0]) > original.count("\n")  # the line of the broken part
        assert len(line) < 400
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"].get("train_vae")
    assert lock == locked  # DVC recorded neither the old values nor the new ones
    for output in ("models/vae.pt", "metrics/train_vae.json", "metrics/all/train_vae.json", "plots/train_vae"):
        assert not (project / output).exists(), output  # all of the stage's outputs or none: none
    assert checkpoint_epoch(project) == TINY["train"]["epochs"]  # the finished training is kept
    client, (stage,) = stage_runs(project, "train_vae")
    assert stage.info.status == "FAILED"  # not FINISHED: its outputs were not recorded
    assert client.get_run(stage.data.tags["mlflow.parentRunId"]).info.status == "FAILED"
    if edit == "broken":
        return  # DVC cannot read the file either; the resume is the same as after the value edit
    assert "train_vae" in run(["dvc", "status"], project).stdout  # and says it must run again
    params.write_text(original)  # the old values back: the stage finishes without training again
    again = run(["dvc", "repro", "train_vae"], project).stdout
    assert f"resuming from checkpoints/train_vae.pt after epoch {TINY['train']['epochs']}" in again
    assert (project / "models/vae.pt").is_file()


@pytest.fixture
def small_disk(tmp_path):
    """A 30 MB tmpfs (needs the right to mount, as root in a container has)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_is_one_line_naming_the_file_and_the_run_fails(small_disk, tmp_path):
    project = make_project(small_disk / "p", TINY)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # the store on another disk, so the run's end can be recorded
    run(["python", "-m", "stages.prepare"], project, MLFLOW_TRACKING_URI=uri)
    free = shutil.disk_usage(small_disk).free
    (small_disk / "filler").write_bytes(b"\0" * (free - 300_000))  # 0.3 MB left: less than a checkpoint
    out = run(["python", "-m", "stages.train_vae"], project, check=False, MLFLOW_TRACKING_URI=uri)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    (line,) = [x for x in out.stderr.strip().splitlines() if x.startswith("error:")]
    assert (
        line.startswith("error: cannot write checkpoints/train_vae.pt: its file system is full (")
        and "`dvc repro`" in line
    )
    client = MlflowClient(uri)
    (stage,) = client.search_runs(
        [client.get_experiment_by_name("balanced-vae").experiment_id], "tags.`bvae.stage` = 'train_vae'"
    )
    assert stage.info.status == "FAILED"
    assert client.get_run(stage.data.tags["mlflow.parentRunId"]).info.status == "FAILED"


def test_a_failed_first_stage_names_the_command_that_restores_its_committed_outputs(tmp_path):
    """DVC removes prepare's committed metrics and plots before running it; a bad param then
    fails it: the line after its error names the git command that brings them back, and that
    command does."""
    project = make_project(tmp_path, PARAMS)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["prepare"]["seed"] = "one"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro", "prepare"], project, check=False, BVAE_TRACKING="off")
    assert out.returncode != 0
    lines = out.stderr.splitlines()
    (line,) = [line for line in lines if line.startswith("error: ")]
    assert line.startswith("error: prepare.seed: "), line
    hint = lines[lines.index(line) + 1]
    assert hint.startswith("note: prepare's committed outputs are gone") and hint.endswith(" brings them back"), hint
    command = hint.split("`")[-2]
    assert command == "git checkout -- metrics/prepare.json plots/prepare", line
    deleted = run(["git", "ls-files", "--deleted"], project).stdout.split()
    assert "metrics/prepare.json" in deleted
    run(command.split(), project)
    assert run(["git", "status", "--porcelain", "--", "metrics", "plots"], project).stdout == ""
