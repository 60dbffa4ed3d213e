"""What params.yaml may hold: every key, its type and range, and the combinations that
cannot work. :func:`validate` runs before any stage does any work and raises one
:class:`PipelineError` naming the first bad key (with a did-you-mean for unknown keys).

The names params may choose from come from :mod:`pipeline.config.choices` (no torch import);
the model and balance blocks take their keys and types from its architectures' and
strategies' defaults.

Longer than 300 lines because the schema of every section is one table (:func:`_schema`), so
that a reader sees every key of params.yaml and its range in one place.
"""

import difflib
import math
import posixpath
import re
from dataclasses import dataclass

import yaml

from pipeline import PipelineError
from pipeline.config.choices import (
    ARCHITECTURES,
    DATASETS,
    FEATURES,
    MIN_IMAGES,
    NATIVE_SIZE,
    PRECISIONS,
    PROTOCOLS,
    SAMPLERS,
    SEED_MAX,
    STRATEGIES,
    THREADS,
    UNLABELLED,
)
from pipeline.config.sizing import AUTO


@dataclass(frozen=True)
class Value:
    """One leaf: its type (int, float, bool, str, list), whether null is allowed, the allowed
    choices, and bounds (``lo``/``hi`` inclusive, ``gt``/``lt`` exclusive)."""

    type: type
    null: bool = False
    choices: tuple = ()
    lo: float | None = None
    hi: float | None = None
    gt: float | None = None
    lt: float | None = None
    item_choices: tuple = ()  # for lists: the allowed items

    def check(self, key: str, v) -> None:
        if v is None:
            if not self.null:
                raise PipelineError(f"{key}: must not be null (expected {self._what()})")
            return
        if self.type in (int, float) and isinstance(v, str) and _number(v):
            if not isinstance(yaml.safe_load(v), str):  # a number unquoted: so it was written in quotes
                raise PipelineError(f"{key}: {v!r} is in quotes, so YAML reads it as text; remove the quotes")
            if self.type is float:
                raise PipelineError(
                    f"{key}: {v!r} is read as a string (YAML 1.1); write it with a dot, e.g. "
                    f"{v.replace('e', '.0e', 1) if '.' not in v else v}"
                )
        ok = {
            int: isinstance(v, int) and not isinstance(v, bool),
            float: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
            bool: isinstance(v, bool),
            str: isinstance(v, str) and v != "",
            list: isinstance(v, list),
        }[self.type]
        if not ok:
            raise PipelineError(f"{key}: expected {self._what()}, got {v!r}")
        if self.choices and v not in self.choices:
            raise PipelineError(
                f"{key}: {v!r} is not one of {', '.join(map(str, self.choices))}{_guess(v, self.choices)}"
            )
        for item in v if self.type is list else ():
            if item not in self.item_choices:
                raise PipelineError(
                    f"{key}: {item!r} is not one of {', '.join(self.item_choices)}{_guess(item, self.item_choices)}"
                )
        if self.type is list and len(set(map(str, v))) < len(v):
            raise PipelineError(f"{key}: lists an entry twice")
        for bound, fails, word in (
            (self.lo, lambda b: v < b, ">="),
            (self.hi, lambda b: v > b, "<="),
            (self.gt, lambda b: v <= b, ">"),
            (self.lt, lambda b: v >= b, "<"),
        ):
            if bound is not None and self.type in (int, float) and fails(bound):
                raise PipelineError(f"{key}: {v} is out of range (must be {word} {bound})")

    def _what(self) -> str:
        name = {int: "an integer", float: "a number", bool: "true or false", str: "a non-empty string", list: "a list"}
        return name[self.type] + (" or null" if self.null else "")


def _number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _guess(word, options, prefix: str = "") -> str:
    """ " (did you mean gen2?)": the option that differs only in case, else the closest one."""
    options = [str(o) for o in options]
    close = [o for o in options if o.lower() == str(word).lower()] or difflib.get_close_matches(str(word), options, n=1)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


@dataclass(frozen=True)
class Interval(Value):
    """How often: a number of epochs (an integer >= 1) or a duration in seconds, "30s"."""

    type: type = int

    def check(self, key: str, v) -> None:
        if isinstance(v, str) and re.fullmatch(r"\d+(\.\d+)?s", v.strip()) and float(v.strip()[:-1]) > 0:
            return
        if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
            return
        raise PipelineError(f'{key}: expected a number of epochs (an integer >= 1) or seconds such as "30s", got {v!r}')


COUNT, SEED = Value(int, lo=1), Value(int, lo=0, hi=SEED_MAX)


@dataclass(frozen=True)
class CountOr(Value):
    """A count, or one of ``words``: ``auto`` (latent_dim, epochs: chosen from the data when the
    stage runs, :mod:`pipeline.config.sizing`), ``all`` or ``adaptive`` (threads)."""

    type: type = int
    lo: float | None = 1
    words: tuple = (AUTO,)

    def check(self, key: str, v) -> None:
        if v not in self.words:
            super().check(key, v)

    def _what(self) -> str:
        return super()._what() + " or " + " or ".join(self.words)


LR = Value(float, gt=0)


def _schema() -> dict:
    speed = {
        "lr_halve_every": Value(int, null=True, lo=1),
        "precision": Value(str, choices=PRECISIONS),
        "compile": Value(bool),
        "checkpoint_every": Interval(),
        "diag_every": Interval(),
    }
    return {
        "prepare": {
            "dataset": Value(str, choices=DATASETS),
            "data_root": Value(str),
            "image_size": Value(int, null=True, lo=4),
            "channels": Value(int, null=True, choices=(1, 3)),
            "bad_images": Value(str, choices=("skip", "fail")),
            "test_fraction": Value(float, gt=0, lt=1),
            "val_fraction": Value(float, lo=0, lt=1),
            "limit_train": Value(int, null=True, lo=MIN_IMAGES),
            "limit_test": Value(int, null=True, lo=MIN_IMAGES),
            "jpeg_quality": Value(int, null=True, lo=1, hi=95),
            "seed": SEED,
        },
        "reference": {
            "features": Value(str, choices=FEATURES),
            "inception_weights": Value(str, null=True),
            "classifier": {"feature_dim": COUNT, "epochs": COUNT, "batch_size": COUNT, "lr": LR, "seed": SEED},
        },
        "train": {
            "latent_dim": CountOr(),
            "model": _model_schema(),
            "epochs": CountOr(),
            "batch_size": COUNT,
            "lr": LR,
            **speed,
            "seed": SEED,
            "grid_every": Value(int, null=True, lo=0),
            "diag_size": Value(int, lo=2),
            "balance": _balance_schema(),
        },
        "stage2": {
            "width": COUNT,
            "depth": COUNT,
            "epochs": CountOr(),
            "batch_size": COUNT,
            "lr": LR,
            **speed,
            "seed": SEED,
            "diag_size": Value(int, lo=2),
            "gmm": {"components": COUNT, "covariance": Value(str, choices=("full", "tied", "diag", "spherical"))},
            "balance": _balance_schema(),
        },
        "evaluate": {
            "num_samples": Value(int, null=True, lo=MIN_IMAGES),
            "samplers": Value(list, item_choices=SAMPLERS),
            "rescale": Value(bool),
            "batch_size": COUNT,
            "grid_rows": COUNT,
            "seed": SEED,
            "protocol": Value(str, choices=PROTOCOLS),
            "nll_samples": Value(int, lo=0),
            "nll_prior_samples": COUNT,
            "nll_images": Value(int, null=True, lo=2),
            "register": {
                "name": Value(str, null=True),
                "alias": Value(str, null=True),
                "champion": Value(str, null=True),
            },
        },
        "threads": CountOr(words=THREADS),  # CPU threads of each computing stage (pipeline/hardware/threads.py)
    }


BALANCE_RANGES = {
    "beta": {"lo": 0},
    "anneal_steps": {"lo": 1},
    "ramp_fraction": {"gt": 0, "hi": 1},
    "momentum": {"lo": 0, "lt": 1},
    "k": {"gt": 0},
    "lr_factor": {"gt": 0},
}


MODEL_RANGES = {"num_down": {"lo": 0, "hi": 8}, "num_scale": {"lo": 1, "hi": 8}}  # the rest: counts >= 1


def _model_schema() -> dict:
    """Every architecture's keys, typed by their defaults, plus ``arch``."""
    keys = {"arch": Value(str, choices=tuple(ARCHITECTURES))}
    for defaults in ARCHITECTURES.values():
        for name, default in defaults.items():
            keys[name] = Value(type(default), **MODEL_RANGES.get(name, {"lo": 1}))
    return keys


def _balance_schema() -> dict:
    """Every strategy's keys, typed by their defaults, plus ``strategy``."""
    keys = {"strategy": Value(str, choices=tuple(STRATEGIES))}
    for defaults in STRATEGIES.values():
        for name, default in defaults.items():
            keys[name] = Value(type(default), **BALANCE_RANGES.get(name, {}))
    return keys


def _check_registry_names(register: dict) -> None:
    """MLflow's rules for model names and aliases (mlflow/utils/validation.py, MLflow 3.17:
    _validate_model_name line 692, _validate_model_alias_name line 723 and its regex at line
    53, the reserved names at lines 56 and 740), checked before the pipeline runs, not
    after it, when the registry refuses them."""
    name = register["name"]
    if name is not None and ("/" in name or ":" in name or posixpath.normpath(name) != name or name.startswith(".")):
        raise PipelineError(
            f"evaluate.register.name: {name!r} is not a valid MLflow model name (no '/' or ':', "
            "no leading '.'); e.g. balanced-vae-generator"
        )
    for key in ("alias", "champion"):
        alias = register[key]
        if alias is None:
            continue
        if alias.lower() == "latest":
            raise PipelineError(f"evaluate.register.{key}: 'latest' is reserved by MLflow; choose another alias")
        if re.fullmatch(r"[vV]\d+", alias):
            raise PipelineError(
                f"evaluate.register.{key}: {alias!r} is reserved by MLflow for version numbers "
                "(v1 is version 1); choose another alias"
            )
        if not re.fullmatch(r"[\w\-]{1,255}", alias):
            raise PipelineError(
                f"evaluate.register.{key}: {alias!r} is not a valid MLflow alias (letters, digits, "
                "_ and -, at most 255)"
            )
    alias, champion = register["alias"], register["champion"]
    if alias and champion and alias.lower() == champion.lower():
        raise PipelineError(
            f"evaluate.register.champion: the same alias as evaluate.register.alias ({alias!r}); the "
            "champion moves only on a better FID, so name it differently"
        )


def validate(params: dict) -> None:
    """Check every key of ``params`` (a loaded params.yaml), then the combinations."""
    _walk(params, _schema(), "")
    _combinations(params)


def _walk(node, schema: dict, prefix: str) -> None:
    if not isinstance(node, dict):
        raise PipelineError(f"{prefix.rstrip('.') or 'params'}: expected a mapping of keys, got {node!r}")
    for key in node:
        if key not in schema:
            raise PipelineError(f"unknown key {prefix}{key}{_guess(key, list(schema), prefix)}")
    for key, spec in schema.items():
        if key not in node:
            raise PipelineError(f"missing key {prefix}{key}")
        if isinstance(spec, dict):
            _walk(node[key], spec, f"{prefix}{key}.")
        else:
            spec.check(f"{prefix}{key}", node[key])


def _combinations(p: dict) -> None:
    prep, model = p["prepare"], p["train"]["model"]
    size = prep["image_size"] or NATIVE_SIZE.get(prep["dataset"])
    if size is None:
        raise PipelineError(f"prepare.image_size: required for dataset {prep['dataset']} (its images have any size)")
    if model["arch"] == "conv" and size % 2 ** model["num_down"]:
        raise PipelineError(
            f"train.model.num_down: the image size {size} is not divisible by 2**{model['num_down']}; "
            "lower num_down or change prepare.image_size"
        )
    if model["arch"] == "resnet_ref" and size & (size - 1):
        raise PipelineError(
            f"train.model.arch: resnet_ref needs a power-of-two image side (its decoder doubles "
            f"from 2x2), not {size}; use infogan, resnet or conv, or change prepare.image_size"
        )
    if model["arch"] == "infogan" and size % 4:
        raise PipelineError(
            f"train.model.arch: infogan needs an image side divisible by 4, not {size}; change prepare.image_size"
        )
    if model["arch"] in ("resnet", "resnet_ref") and size % 2 ** (model["num_scale"] - 1):
        raise PipelineError(
            f"train.model.num_scale: the image size {size} is not divisible by "
            f"2**(num_scale - 1) = {2 ** (model['num_scale'] - 1)}; lower num_scale or change "
            "prepare.image_size"
        )
    if p["reference"]["features"] == "domain" and prep["dataset"] in UNLABELLED:
        raise PipelineError(
            f"reference.features: domain needs class labels and {prep['dataset']} has none; use inception"
        )
    _check_registry_names(p["evaluate"]["register"])
