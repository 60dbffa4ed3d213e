"""The project code a stage runs: what its ``deps`` in dvc.yaml must list, and its hash.

DVC re-runs a stage when one of its deps changes, so a stage depends on every project
file whose code it may run: its command module and, transitively, every project
module that module imports, at the top or inside a function (a lazy import runs when
the stage needs it). :func:`stage_files` finds them by reading the imports in the
source (no import is run); a package that loads its modules by name
(``importlib.import_module``, the registry of balance strategies) contributes all of
them. Exempt are the modules in :data:`NOT_DEPS`: they talk to MLflow or time the stage,
and no output file depends on them. ``tests/test_code_deps.py`` checks that
dvc.yaml lists exactly these files for every stage (a folder covers its files), and
that a real stage run loads no project module outside them.

The same files make a training checkpoint's code identity (:func:`code_hash`): a
checkpoint written by other code is not resumed.

    python -m stages.code_deps          # each stage's code deps, as dvc.yaml should list them
    python -m stages.code_deps --check  # how dvc.yaml differs from them (exit 1 if it does)
"""

import ast
import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "stages")  # the project's own code
STAGES = ("prepare", "reference", "train_vae", "train_stage2", "evaluate")
NOT_DEPS = {  # project modules a stage runs but that change no output file, with the reason
    "pipeline/tracking/__init__.py": "MLflow: the package docstring",
    "pipeline/tracking/stage_run.py": "MLflow: the stage's run and what it logs",
    "pipeline/tracking/runs.py": "MLflow: the parent and stage runs",
    "pipeline/tracking/store.py": "MLflow: which store, and whether it answers",
    "pipeline/tracking/registry.py": "MLflow: logged models and the model registry",
    "pipeline/hardware/timing.py": "where a stage's time goes (to MLflow and BVAE_TIMING only)",
}


def _module_path(name: str) -> Path | None:
    """The source file of project module ``name`` (a package: its ``__init__.py``)."""
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(path: Path, name: str) -> set[str]:
    """The project modules that module ``name`` (source ``path``) imports anywhere in its code."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from .base import y
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from pipeline import data`: a module
        elif isinstance(node, ast.Attribute) and node.attr == "import_module" and path.name == "__init__.py":
            found |= {f"{name}.{p.stem}" for p in path.parent.glob("*.py") if p.name != "__init__.py"}
    project = {m for m in found if m.split(".")[0] in PACKAGES and _module_path(m)}
    parents = {".".join(m.split(".")[:i]) for m in project for i in range(1, m.count(".") + 1)}
    return project | parents  # importing a.b.c runs a/__init__.py and a/b/__init__.py first


def _relative(name: str) -> str:
    return str(_module_path(name).relative_to(ROOT))


def closure(module: str) -> set[str]:
    """``module`` and every project module it imports, transitively (relative paths); the
    imports of a module in :data:`NOT_DEPS` are not followed (what it runs writes no output)."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if _relative(name) not in NOT_DEPS:
            todo += _imports(_module_path(name), name)
    return {_relative(m) for m in seen}


def stage_files(stage: str) -> list[str]:
    """The project files stage ``stage`` may run and its outputs may depend on: its code deps."""
    return sorted(closure(f"stages.{stage}") - set(NOT_DEPS))


def as_deps(files: list[str]) -> list[str]:
    """``files`` as dvc.yaml lists them: a package folder whose every module is a dep is one entry."""
    out, folders = [], set()
    for f in files:
        folder = Path(f).parent
        modules = {str(p.relative_to(ROOT)) for p in (ROOT / folder).glob("*.py")}
        if folder.name not in PACKAGES and modules <= set(files):
            folders.add(str(folder))
        else:
            out.append(f)
    return sorted(out + sorted(folders))


def listed(deps: list) -> set[str]:
    """The project files that dvc.yaml ``deps`` cover (a folder: its modules)."""
    files = set()
    for dep in deps:
        path = str(dep).rstrip("/")
        if path.split("/")[0] in PACKAGES:
            folder = ROOT / path
            files |= {str(p.relative_to(ROOT)) for p in folder.glob("*.py")} if folder.is_dir() else {path}
    return files


def problems(dvc: dict) -> list[str]:
    """How the code deps of every stage in ``dvc`` (dvc.yaml, loaded) differ from
    :func:`stage_files`: one line per stage, [] when they all match."""
    out = []
    for stage in STAGES:
        have, want = listed(dvc["stages"][stage].get("deps", [])), set(stage_files(stage))
        missing, extra = sorted(want - have), sorted(have - want)
        if missing or extra:
            out.append(
                f"{stage}: "
                + "; ".join(
                    ([f"runs {', '.join(missing)} but does not list it"] if missing else [])
                    + ([f"lists {', '.join(extra)} but does not run it"] if extra else [])
                )
            )
    return out


def code_hash(stage: str) -> str:
    """sha256 of the stage's code deps (names and bytes): same hash, same code."""
    h = hashlib.sha256()
    for f in stage_files(stage):
        h.update(f.encode() + b"\0" + (ROOT / f).read_bytes() + b"\0")
    return h.hexdigest()


def stage_key(stage: str, values: dict) -> str:
    """What DVC runs stage ``stage`` on, as a hash: the ``values`` of its params sections, its
    code (:func:`code_hash`) and the bytes of its other deps in dvc.yaml (the outputs of earlier
    stages). The same key gives the same outputs, so it keys the MLflow run of prepare,
    reference and evaluate within its configuration: a rerun of the same stage on the same
    inputs (a queued experiment queued again after its worker was killed) continues that run
    instead of adding a second one."""
    import json

    import yaml

    h = hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode() + code_hash(stage).encode())
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage].get("deps", [])
    for dep in deps:
        path = ROOT / str(dep)
        if str(dep).split("/")[0] in PACKAGES:
            continue  # code: in code_hash
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            h.update(str(f.relative_to(ROOT)).encode() + b"\0" + (f.read_bytes() if f.is_file() else b"missing"))
    return h.hexdigest()[:16]


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--check"]:
        import yaml

        found = problems(yaml.safe_load((ROOT / "dvc.yaml").read_text()))
        print("\n".join(found) or "dvc.yaml lists every stage's code deps")
        sys.exit(1 if found else 0)
    for name in STAGES:
        print(f"{name}:")
        for dep in as_deps(stage_files(name)):
            print(f"  - {dep}")
