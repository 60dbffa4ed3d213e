"""params.yaml: one section per stage (DVC tracks each stage's sections as its params deps)."""

import hashlib
import json
from pathlib import Path

import yaml

from pipeline import PipelineError


def load_params(path: str | Path = "params.yaml", validate: bool = True) -> dict:
    """Read params.yaml and check every key (:mod:`pipeline.config.schema`) before any work."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"params file not found: {path}")
    try:
        params = yaml.load(path.read_text(), Loader=_UniqueKeys)
    except PipelineError as e:
        raise PipelineError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PipelineError(f"{path} is not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(params, dict):
        raise PipelineError(f"{path} must be a mapping of sections (prepare, train, ...)")
    if validate:
        from pipeline.config.schema import validate as check

        check(params)
    return params


class _UniqueKeys(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key twice in one mapping is an error (PyYAML keeps
    the last silently; DVC refuses the file): a second `train:` section is one line."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise PipelineError(
                    f"the key '{key}' appears twice, at lines {seen[key] + 1} and "
                    f"{key_node.start_mark.line + 1}: keep one"
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


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


def used(params: dict) -> dict:
    """``params`` without the balance params that its strategy ignores (every ``balance``
    block, at any depth, keeps ``strategy`` and that strategy's own keys, as listed in
    :data:`pipeline.config.choices.STRATEGIES`): a running_gamma run logs no beta."""
    from pipeline.config.choices import STRATEGIES

    out = {}
    for k, v in params.items():
        if k == "balance" and isinstance(v, dict) and v.get("strategy") in STRATEGIES:
            v = {key: x for key, x in v.items() if key == "strategy" or key in STRATEGIES[v["strategy"]]}
        out[k] = used(v) if isinstance(v, dict) else v
    return out


LABEL_PARAMS = {  # the params that tell runs of one strategy apart, shown in labels
    "fixed": ("beta",),
    "annealed": ("beta", "cyclical"),
    "running_gamma": ("k",),
    "learned_gamma": ("lr_factor",),
}


def balance_label(balance: dict) -> str:
    """A balance block in a few words: "running_gamma k=1.0", "fixed beta=0.1", "sigma"."""
    strategy = balance.get("strategy", "?")
    return " ".join([strategy] + [f"{k}={balance[k]}" for k in LABEL_PARAMS.get(strategy, ()) if k in balance])


def description(params: dict, diff: list[str]) -> str:
    """The parent run's description (MLflow shows it on the run page)."""
    train, stage2 = params.get("train", {}), params.get("stage2", {})
    lines = [
        f"Dataset {params.get('prepare', {}).get('dataset', '?')}; stage 1 {balance_label(train.get('balance', {}))}, "
        f"epochs {train.get('epochs', '?')}, latent_dim {train.get('latent_dim', '?')}; stage 2 "
        f"{balance_label(stage2.get('balance', {}))}, epochs {stage2.get('epochs', '?')}.",
        "Changed from the commit: " + (", ".join(diff) if diff else "nothing") + ".",
    ]
    return "\n\n".join(lines)


def config_hash(params: dict) -> str:
    """A short stable id of a whole configuration: the key of its MLflow parent run."""
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _yaml11_float(v: float) -> str:
    """A float as YAML 1.1 (PyYAML, DVC) reads it back as a float: 5e-05 -> 5.0e-05."""
    text = repr(v)
    mantissa, e, exponent = text.partition("e")
    return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text


def apply_overlay(path: str | Path, overlay: dict) -> list[tuple[str, object, object]]:
    """Set every leaf of ``overlay`` in the params file at ``path``, keeping its comments
    and layout (ruamel.yaml round trip, as DVC's ``-S`` does). Every key must already
    exist there. Returns the changes as (key, old, new); writes atomically."""
    from ruamel.yaml import YAML

    from pipeline.files import atomic_path

    yaml_rt = YAML()
    yaml_rt.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    yaml_rt.representer.add_representer(
        float, lambda r, v: r.represent_scalar("tag:yaml.org,2002:float", _yaml11_float(v))
    )
    path = Path(path)
    load_params(path, validate=False)  # clear errors for a missing or broken file
    doc = yaml_rt.load(path.read_text())
    changes = []
    for key, new in flatten(overlay).items():
        node, *parents = doc, *key.split(".")[:-1]
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        leaf = key.split(".")[-1]
        if not isinstance(node, dict) or leaf not in node:
            raise PipelineError(f"{path} has no key {key}")
        if node[leaf] != new:
            changes.append((key, node[leaf], new))
            node[leaf] = new
    with atomic_path(path, output=False) as tmp:  # the user's file, never removed as a failed stage's output
        with open(tmp, "w") as f:
            yaml_rt.dump(doc, f)
        load_params(tmp)  # the result must be valid before it replaces the file
    return changes
