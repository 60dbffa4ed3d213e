"""The library's layers (docs/architecture.md, "Layers"): a package imports only from its own
layer or the ones below it, so the drawing a contributor reads is the code's real shape."""

import ast
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.quick  # unit tests: no pipeline run (`pytest -m quick`, the edit-test loop)

LAYERS = [  # bottom first; the same rows as the drawing in docs/architecture.md
    {"__init__", "config", "hardware", "files", "images", "interrupts", "progress", "seeding"},
    {"data", "models", "balance"},
    {"training", "tracking"},
    {"evaluation", "reports"},
]
LAYER = {part: n for n, parts in enumerate(LAYERS) for part in parts}


def part_of(module: str) -> str:
    """pipeline.training.loop -> training; pipeline.files -> files; pipeline -> __init__."""
    return module.split(".")[1] if "." in module else "__init__"


def imports(path: Path) -> set[str]:
    """Every project module ``path`` imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pipeline":
            found |= {f"pipeline.{a.name}" for a in node.names} if node.module == "pipeline" else {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "pipeline"}
    return found


def upward_imports() -> list[str]:
    wrong = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for target in imports(path):
            target_part = part_of(target) if part_of(target) in LAYER else "__init__"  # `from pipeline import X`
            if LAYER[target_part] > LAYER[part_of(module)]:
                wrong.append(f"{module} imports {target}")
    return wrong


def test_every_package_is_in_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in (ROOT / "pipeline").iterdir() if p.name != "__pycache__"}
    assert parts == set(LAYER)


def test_no_package_imports_from_a_layer_above_it():
    assert upward_imports() == []


def test_an_upward_import_is_named(tmp_path, monkeypatch):
    """The check can fail: a model that imports the training loop is named."""
    bad = tmp_path / "pipeline" / "models"
    bad.mkdir(parents=True)
    (bad / "conv.py").write_text("from pipeline.training.loop import fit\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert upward_imports() == ["pipeline.models.conv imports pipeline.training.loop"]
