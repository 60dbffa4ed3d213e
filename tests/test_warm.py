"""Warm stage processes (stages/warm.py) with the real DVC, MLflow and signals: the same
outputs as fresh processes, Ctrl-C and SIGKILL reach the stage, exit codes come back, a
code change gets its own server, a dead server's socket falls back to a cold run."""

import json
import signal
from pathlib import Path

import psutil
import pytest
import yaml
from mlflow import MlflowClient

from conftest import TINY, make_project, merge, run
from test_faults import start_and_stop

WARM = {"BVAE_WARM": "300"}
OUTPUTS = ["metrics/prepare.json", "metrics/reference.json", "metrics/train_vae.json", "metrics/train_stage2.json",
           "metrics/evaluate.json", "plots/train_vae/history.csv", "plots/train_vae/diagnostics.csv",
           "plots/train_stage2/history.csv", "plots/train_stage2/latents.csv"]  # fmt: skip


def warm(project: Path, *args: str, check: bool = True):
    return run(["python", "-m", "stages.warm", *args], project, check=check, **WARM)


def server_pid(project: Path) -> int:
    out = warm(project, "start").stdout
    assert out.startswith("warm server ") and out.strip().endswith(f"ready for {project}"), out
    return int(out.split()[2])


def timing(path: Path) -> dict:
    return {d["stage"]: d for d in map(json.loads, path.read_text().splitlines())}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A tiny project reproduced once in fresh processes: (path, {output: text})."""
    project = make_project(tmp_path_factory.mktemp("warm"), merge(TINY, {"train": {"epochs": 6}}))
    run(["dvc", "repro"], project)
    yield project, {f: (project / f).read_text() for f in OUTPUTS}
    warm(project, "stop", check=False)


def test_warm_stages_write_what_fresh_processes_write(project, tmp_path):
    project, cold = project
    server_pid(project)
    out = run(["dvc", "repro", "-f"], project, BVAE_TIMING=str(tmp_path / "t.jsonl"), **WARM)
    lines = timing(tmp_path / "t.jsonl")
    assert sorted(lines) == sorted(["prepare", "reference", "train_vae", "train_stage2", "evaluate"])
    assert all(line["warm"] for line in lines.values()), lines
    for f, text in cold.items():
        assert (project / f).read_text() == text, f
    assert "Traceback" not in out.stdout + out.stderr and "RuntimeWarning" not in out.stderr
    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    stage = lines["train_vae"]
    runs = client.search_runs([client.get_experiment_by_name("balanced-vae").experiment_id],
                              "tags.`bvae.stage` = 'train_vae'", order_by=["attributes.start_time DESC"])  # fmt: skip
    latest = runs[0]
    assert latest.info.status == "FINISHED" and 0 < latest.data.metrics["train_vae/stage_wall_time_s"] <= stage["wall"]
    assert [m.step for m in client.get_metric_history(latest.info.run_id, "train_vae/loss")] == list(range(1, 7))
    assert any(a.path == "model" for a in client.list_artifacts(latest.info.run_id))


def test_ctrl_c_and_sigkill_reach_a_warm_stage(project):
    project, cold = project
    server_pid(project)
    proc = start_and_stop(project, ["python", "-m", "stages.train_vae"], signal.SIGINT, after_epoch=2, **WARM)
    _, err = proc.communicate()
    assert proc.returncode == 130, err
    assert "interrupted: train_vae stopped; checkpoints/train_vae.pt holds epoch" in err and "Traceback" not in err

    proc = start_and_stop(project, ["python", "-m", "stages.train_vae"], signal.SIGKILL, after_epoch=4, **WARM)
    assert proc.returncode == -signal.SIGKILL
    stage = int((project / "held").read_text())  # the warm stage process, not a child of the killed command
    try:
        psutil.Process(stage).wait(timeout=60)  # its supervisor kills it; TimeoutExpired if it lives on
    except psutil.NoSuchProcess:
        pass
    out = run(["python", "-m", "stages.train_vae"], project, **WARM)
    assert "resuming from checkpoints/train_vae.pt after epoch 4" in out.stdout
    for f in ("metrics/train_vae.json", "plots/train_vae/history.csv"):
        assert (project / f).read_text() == cold[f], f


def test_exit_codes_and_messages_come_back(project, tmp_path):
    project, _ = project
    server_pid(project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["epochs"] = "many"
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(params))
    out = run(["python", "-m", "stages.train_vae", "--params", str(bad)], project, check=False, **WARM)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("error: ") and "train.epochs" in out.stderr


def test_a_dead_server_falls_back_cold_and_a_code_change_gets_its_own(project, tmp_path):
    project, _ = project
    first = server_pid(project)
    psutil.Process(first).kill()
    psutil.Process(first).wait(timeout=60)
    out = run(["python", "-m", "stages.prepare"], project, BVAE_TIMING=str(tmp_path / "t.jsonl"), **WARM)
    assert not timing(tmp_path / "t.jsonl")["prepare"]["warm"]  # its socket no longer answers: ran here
    assert "warm server" not in out.stderr
    second = server_pid(project)  # started by that cold stage (or now)
    assert second != first
    utils = project / "pipeline/utils.py"
    utils.write_text(utils.read_text() + "\n# a local edit\n")
    try:
        third = server_pid(project)
        assert third != second  # new code, new server; the old one serves nobody and idles out
        listed = warm(project, "status").stdout
        assert str(second) in listed and str(third) in listed
        warm(project, "stop")
        for pid in (second, third):
            try:
                psutil.Process(pid).wait(timeout=60)
            except psutil.NoSuchProcess:
                pass
    finally:
        utils.write_text(utils.read_text().replace("\n# a local edit\n", ""))
