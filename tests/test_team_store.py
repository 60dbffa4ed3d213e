"""The team's store for real: docs/scaling.md's team recipe, step for step. PostgreSQL in a
temporary folder (its own `initdb` and `pg_ctl`), `scripts/tracking_server.sh` on it, 4
queued experiments on 2 workers, one worker killed (SIGKILL to its process group) in the
middle of train_vae, its experiment queued again: every parent and stage run is in the
store once, FINISHED, with its params, metrics and grids, and the killed training resumed
from its checkpoint (each epoch logged once). Skips, naming what it needs, where PostgreSQL's
server programs are not installed."""

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from conftest import HOOKS_PATH, TINY, free_port, make_project, queue_status, queued_names, run, tool_env

pytestmark = pytest.mark.heavy  # end-to-end runs of the real DVC pipeline (`pytest -m heavy`; CI runs them)

STAGES = ["prepare", "reference", "train_vae", "train_stage2", "evaluate"]


def _pg_bin() -> Path | None:
    """The folder of PostgreSQL's server programs: on PATH, or Debian's /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[::-1]), None)
    return Path(found).resolve().parent if found else None


@pytest.fixture
def postgres():
    """A PostgreSQL server in a temporary folder with an empty database ``mlflow``; yields its
    SQLAlchemy URI. PostgreSQL refuses to run as root, so as root it runs as ``nobody``."""
    pg = _pg_bin()
    if pg is None or not (pg / "pg_ctl").is_file():
        pytest.skip("needs PostgreSQL's server programs initdb and pg_ctl (Debian: apt-get install postgresql)")
    as_user = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("runs as root: needs setpriv (util-linux) to start PostgreSQL as nobody")
        as_user = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    folder = Path(tempfile.mkdtemp(prefix="bvae-pg-"))  # not under pytest's root-only tmp_path
    if as_user:
        shutil.chown(folder, "nobody", "nogroup")
    data, port = folder / "data", free_port()
    steps = [
        [str(pg / "initdb"), "-D", str(data), "-U", "mlflow", "--auth=trust", "-E", "UTF8"],
        [str(pg / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "start", "-o",
         f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"],
        [str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", "mlflow"],
    ]  # fmt: skip
    try:
        for step in steps:
            subprocess.run(as_user + step, check=True, capture_output=True, text=True, cwd=folder, timeout=120)
        yield f"postgresql://mlflow@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(as_user + [str(pg / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def _start_queue(project: Path, **env) -> None:
    """`dvc queue start -j 2`, returning once it has started its workers (they keep a pipe
    open, so its output goes to a file, queue-start.log)."""
    with open(project / "queue-start.log", "a") as log:
        subprocess.run(["dvc", "queue", "start", "-j", "2"], cwd=project, env=tool_env(**env), stdout=log, stderr=log,
                       check=True, timeout=120)  # fmt: skip


def test_a_team_store_on_postgresql_keeps_every_run_once_through_a_killed_worker(tmp_path, postgres):
    project = make_project(tmp_path, TINY)
    (project / ".venv").symlink_to(run(["python", "-c", "import sys; print(sys.prefix)"], project).stdout.strip())
    port = free_port()
    out = run(["bash", "scripts/tracking_server.sh"], project, PORT=str(port), BACKEND_URI=postgres).stdout
    uri = f"http://127.0.0.1:{port}"
    assert f"backend {postgres}" in out and f"export MLFLOW_TRACKING_URI={uri}" in out, out
    held = tmp_path / "held"  # every train_vae holds in its second epoch until the test removes this file
    hooks = dict(PYTHONPATH=HOOKS_PATH, BVAE_TEST_HOLD_AFTER_EPOCH="1", BVAE_TEST_HOLD_FILE=str(held))
    env = dict(MLFLOW_TRACKING_URI=uri, **hooks)
    try:
        seeds = [1, 2, 3, 4]
        queued = run(["dvc", "exp", "run", "--queue", "-S", "threads=1", "-S", "train.seed=1,2,3,4"], project, **env)
        names = queued_names(queued.stdout)
        assert len(names) == len(seeds), queued.stdout
        _start_queue(project, **env)
        deadline = time.time() + 600
        while not held.exists():  # the event: a train_vae is in its second epoch, its first checkpoint saved
            assert time.time() < deadline, queue_status(project, *names)
            time.sleep(0.05)
        pid = int(held.read_text())
        stage_env = dict(line.split("=", 1) for line in Path(f"/proc/{pid}/environ").read_text().split("\0") if line)
        killed = stage_env["DVC_EXP_NAME"]
        seed = yaml.safe_load(Path(f"/proc/{pid}/cwd/params.yaml").read_text())["train"]["seed"]
        os.killpg(os.getpgid(pid), signal.SIGKILL)  # the worker, its experiment's dvc and the stage
        deadline = time.time() + 900
        while (status := queue_status(project, *names)) and any(
            s in ("Queued", "Running") for n, s in status.items() if n != killed
        ):
            held.unlink(missing_ok=True)  # the others go on
            assert time.time() < deadline, status
            time.sleep(0.5)
        assert status[killed] == "Running", status  # DVC's queue never learns that its worker died
        # The recipe: `dvc queue kill` finds its process gone and marks it failed; then remove
        # it and queue the experiment again with the same values.
        said = run(["dvc", "queue", "kill", killed], project)
        assert queue_status(project)[killed] == "Failed", (said.stdout, said.stderr, queue_status(project))
        run(["dvc", "queue", "remove", killed], project)
        resumed = run(["dvc", "exp", "run", "--queue", "-S", "threads=1", "-S", f"train.seed={seed}"], project, **env)
        (name,) = queued_names(resumed.stdout)
        # The other worker may still be alive (an idle worker waits a few seconds before it
        # ends) and take it at once; otherwise it waits for a worker.
        assert queue_status(project, name)[name] in ("Queued", "Running"), queue_status(project, name)
        _start_queue(project, **env)
        while {"Queued", "Running"} & set(queue_status(project, name).values()):
            held.unlink(missing_ok=True)
            assert time.time() < deadline
            time.sleep(0.5)
        assert set(queue_status(project).values()) == {"Success"}, queue_status(project)
        log = run(["dvc", "queue", "logs", name], project).stdout
        assert "train_vae: resuming from " in log and "after epoch 1" in log, log[-3000:]

        print(f"killed {killed} (train.seed={seed}) in train_vae epoch 2; queued again as {name}:")
        print("\n".join(line for line in log.splitlines() if "resuming" in line or "MLflow: " in line))
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("balanced-vae")
        parents = client.search_runs([exp.experiment_id], "tags.`bvae.role` = 'pipeline'")
        assert sorted(int(p.data.params["train.seed"]) for p in parents) == seeds  # each configuration once
        for parent in parents:
            assert parent.info.status == "FINISHED" and "fid_domain_gen2" in parent.data.metrics, parent.info
            children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
            assert sorted(c.data.tags["bvae.stage"] for c in children) == sorted(STAGES)  # each stage once
            for child in children:
                stage = child.data.tags["bvae.stage"]
                assert child.info.status == "FINISHED", (stage, child.info)
                assert child.data.params and child.data.metrics, stage
            train = next(c for c in children if c.data.tags["bvae.stage"] == "train_vae")
            assert train.data.params["train.seed"] == parent.data.params["train.seed"]  # no mixed-up runs
            steps = [m.step for m in client.get_metric_history(train.info.run_id, "train_vae/loss")]
            assert sorted(steps) == [1, 2, 3], (parent.data.params["train.seed"], steps)  # each epoch once
            grids = [a.path for a in client.list_artifacts(train.info.run_id, "grids")]
            assert grids and all(g.endswith(".png") for g in grids), grids
            print(
                f"{parent.info.run_name}: {parent.info.status}, {len(parent.data.params)} params, "
                f"fid_domain_gen2 {parent.data.metrics['fid_domain_gen2']:.3f}; stages "
                + ", ".join(f"{c.data.tags['bvae.stage']} {c.info.status}" for c in children)
                + f"; train_vae epochs logged {sorted(steps)}, grids {len(grids)}"
            )
        assert not list((project / "checkpoints").rglob("*.pt")), "finished experiments leave no checkpoint"
    finally:
        run(["dvc", "queue", "stop"], project, check=False)  # its workers end once idle; now, not in 10 s
        run(["bash", "scripts/tracking_server.sh", "stop"], project, check=False)
