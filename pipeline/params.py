"""params.yaml: one section per stage (DVC tracks each stage's sections as its params deps)."""

import hashlib
import json
from pathlib import Path

import yaml

from pipeline import PipelineError


def load_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"params file not found: {path}")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise PipelineError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(params, dict):
        raise PipelineError(f"{path} must be a mapping of sections (prepare, train, ...)")
    return params


def section(params: dict, name: str, required: tuple[str, ...] = ()) -> dict:
    """Return ``params[name]``, checking it exists and holds the ``required`` keys."""
    sec = params.get(name)
    if not isinstance(sec, dict):
        raise PipelineError(f"params.yaml has no '{name}' section")
    missing = [k for k in required if k not in sec]
    if missing:
        raise PipelineError(f"params.yaml: missing key(s) {', '.join(f'{name}.{k}' for k in missing)}")
    return sec


def flatten(d: dict, prefix: str = "") -> dict:
    """{'train': {'lr': 1e-3}} -> {'train.lr': 1e-3} (the names DVC and MLflow show)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_hash(params: dict) -> str:
    """A short stable id of a whole configuration: the key of its MLflow parent run."""
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
