"""dvc.yaml's code deps are exactly the project modules each stage runs (stages/code_deps.py),
so an edit re-runs the stages it touches and no other. tests/test_pipeline.py checks the
other direction on a real `dvc repro`: no stage loads a project module outside its deps."""

import json
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run
from stages import code_deps

pytestmark = pytest.mark.quick  # unit tests: no pipeline run (`pytest -m quick`, the edit-test loop)


def dvc_yaml() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def test_dvc_yaml_lists_every_module_each_stage_runs_and_no_other():
    assert code_deps.problems(dvc_yaml()) == []


def test_a_module_left_out_of_a_stage_or_one_too_many_is_named():
    dvc = dvc_yaml()
    dvc["stages"]["train_stage2"]["deps"].remove("pipeline/evaluation/sampling.py")  # the codes stage 2 trains on
    dvc["stages"]["prepare"]["deps"].append("pipeline/evaluation/sampling.py")
    assert code_deps.problems(dvc) == [
        "prepare: lists pipeline/evaluation/sampling.py but does not run it",
        "train_stage2: runs pipeline/evaluation/sampling.py but does not list it",
    ]


def test_imports_inside_functions_and_registries_loaded_by_name_count():
    evaluate, stage2 = code_deps.stage_files("evaluate"), code_deps.stage_files("train_stage2")
    assert (
        "pipeline/evaluation/classifier.py" in evaluate
    )  # imported inside pipeline.evaluation.features.build_feature_space
    assert "pipeline/evaluation/sampling.py" in stage2  # imported inside the stage's command function
    strategies = {str(p.relative_to(ROOT)) for p in (ROOT / "pipeline/balance").glob("*.py")}
    assert strategies <= set(stage2)  # pipeline/balance/__init__.py imports each strategy by name
    assert code_deps.as_deps(stage2).count("pipeline/balance") == 1  # one folder entry covers them
    assert "pipeline/evaluation/sampling.py" not in code_deps.stage_files("prepare")


def test_modules_that_only_talk_to_mlflow_or_time_the_stage_are_exempt_and_exist():
    for path in code_deps.NOT_DEPS:
        assert (ROOT / path).is_file(), path
        assert all(path not in code_deps.stage_files(stage) for stage in code_deps.STAGES)
    assert "pipeline/tracking/stage_run.py" in code_deps.closure("stages.train_vae")  # run, but exempt


def test_the_code_hash_follows_the_deps_and_ignores_the_exempt(tmp_path, monkeypatch):
    for f in code_deps.closure("stages.train_vae"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_bytes((ROOT / f).read_bytes())
    monkeypatch.setattr(code_deps, "ROOT", tmp_path)
    before = code_deps.code_hash("train_vae")
    with open(tmp_path / "pipeline/hardware/timing.py", "a") as f:
        f.write("# an edit to an exempt module\n")
    assert code_deps.code_hash("train_vae") == before
    running_gamma = Path(tmp_path / "pipeline/balance/running_gamma.py")
    running_gamma.write_text(running_gamma.read_text() + "# one more line\n")
    assert code_deps.code_hash("train_vae") != before


def test_dvc_lock_records_the_code_as_it_is():
    """A commit that changes a stage's code without `bash scripts/repro.sh` leaves a dvc.lock
    that a clean clone rewrites (and committed outputs that may be stale): caught here, in
    seconds, instead of by tests/test_reproduce.py's full run."""
    status = json.loads(run(["dvc", "status", "--json"], ROOT).stdout)
    stale = sorted(
        f"{stage}: {path}"
        for stage, changes in status.items()
        for change in changes
        if isinstance(change, dict)
        for path, what in change.get("changed deps", {}).items()
        if path.startswith(("pipeline/", "stages/")) and what == "modified"
    )
    assert not stale, f"dvc.lock predates these code deps; run `bash scripts/repro.sh` and commit dvc.lock: {stale}"


def module_map() -> list[str]:
    """The module map of docs/architecture.md (its first code block under "Layout and design")."""
    text = (ROOT / "docs" / "architecture.md").read_text().split("## Layout and design", 1)[1]
    return text.split("```", 2)[1].splitlines()


def mapped_modules(lines: list[str]) -> set[str]:
    """The modules the map names: each line's names (before two spaces) under its folders; a
    folder names its package's ``__init__``."""
    found, folders = set(), {}
    for line in lines[2:]:  # after the top-level files
        depth = (len(line) - len(line.lstrip())) // 2
        names = line.strip().split("  ")[0]
        if not names or line.startswith(" " * 18):  # a description's second line
            continue
        folders = {d: f for d, f in folders.items() if d < depth}
        base = "/".join(folders[d] for d in range(depth))
        if names.endswith("/"):
            folders[depth] = names.rstrip("/")
            found.add(f"{base}/{names}__init__".lstrip("/"))
        else:
            found |= {f"{base}/{name.strip()}" for name in names.split(",")}
    return found


def test_the_module_map_names_every_module_and_nothing_else():
    """docs/architecture.md's map is the one list of the code's modules: a module it does not
    name is hidden, a name it keeps after the module went is stale."""
    have = {
        str(p.relative_to(ROOT).with_suffix(""))
        for package in ("pipeline", "stages", "bvae")
        for p in (ROOT / package).rglob("*.py")
    }
    named = {m for m in mapped_modules(module_map()) if m.split("/")[0] in ("pipeline", "stages", "bvae")}
    assert sorted(have - named) == [] and sorted(named - have) == []
    assert not {"utils", "common", "misc", "helpers"} & {Path(m).name for m in have}  # names say the job


def test_a_stale_or_missing_module_in_the_map_is_found():
    lines = module_map()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("likelihood "))
    stale = [*lines[: at + 1], "    preprocessing     the references' preprocessing (gone)", *lines[at + 1 :]]
    assert "pipeline/evaluation/preprocessing" in mapped_modules(stale)
    assert "pipeline/evaluation/scoring" not in mapped_modules([line for line in lines if "scoring" not in line])


def test_each_stage_watches_the_params_sections_dvc_yaml_gives_it():
    """A stage names the params sections it reads (stages.command.stage): they are the ``params:``
    of its dvc.yaml entry, which the stage does not read at run time."""
    import importlib

    for stage in code_deps.STAGES:
        command = importlib.import_module(f"stages.{stage}").main
        assert list(command.callback.sections) == dvc_yaml()["stages"][stage]["params"], stage
