"""What every stage command shares and what `--help` needs: the --params option and the
error wrapper. Imports only click, so `--help` starts without torch or MLflow."""

import functools
import signal
import sys

import click

from pipeline import PipelineError

params_option = click.option(
    "--params",
    "params_path",
    type=click.Path(dir_okay=False),
    default="params.yaml",
    show_default=True,
    help="Params file to read (DVC tracks params.yaml).",
)


class Terminated(KeyboardInterrupt):
    """SIGTERM, what `timeout`, SLURM and Kubernetes send before they kill: a stage stops
    as on Ctrl-C (the last finished epoch saved, the MLflow run KILLED) and exits 143."""


def _terminate(signum, frame):
    raise Terminated()


def _sections(stage_name: str) -> list[str] | None:
    """The params sections a stage reads: its ``params:`` in dvc.yaml (None outside a DVC
    project, or for a command that is not a stage)."""
    import yaml

    try:
        with open("dvc.yaml") as f:
            return yaml.safe_load(f)["stages"][stage_name]["params"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return None


def _read_sections(path, sections: list[str] | None) -> dict | None:
    """The params in ``sections``, flattened, as the file holds them now (None when there are
    no sections to read; {"error": ...} for a file that no longer loads)."""
    if path is None or not sections:
        return None
    from pipeline.params import flatten, load_params

    try:
        params = flatten(load_params(path, validate=False))
    except PipelineError as e:
        return {"error": str(e)}
    return {k: v for k, v in params.items() if any(k == s or k.startswith(s + ".") for s in sections)}


def _changed_while_running(stage_name: str, before: dict, after: dict, path) -> str:
    """The stage ran with the values it read at its start; DVC would record the new ones."""
    keys = sorted(set(before) | set(after))
    diff = [f"{k}: {before.get(k)} -> {after.get(k)}" for k in keys if before.get(k) != after.get(k)]
    return (f"{path} changed while {stage_name} ran ({', '.join(diff)}): its outputs follow the values it read at "
            "its start, so it fails here and DVC does not record the new ones; run `dvc repro` again")


def _remove_written() -> None:
    """A stage that fails leaves none of its outputs (not some of them): remove those it wrote.
    Checkpoints are not outputs and stay, for the resume."""
    utils = sys.modules.get("pipeline.utils")
    if utils is None:  # never imported: nothing written
        return
    for path in utils.WRITTEN:
        path.unlink(missing_ok=True)
        try:
            path.parent.rmdir()  # an output folder (plots/train_vae) left empty
        except OSError:
            pass
    utils.WRITTEN.clear()


def stage(fn):
    """Run a stage body, in a warm server when one is up (:mod:`stages.warm`): user errors
    print one line and exit 2; Ctrl-C exits 130, SIGTERM 143 (128 + the signal's number)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from stages import warm

        code = warm.handoff()
        if code is not None:
            sys.exit(code)
        signal.signal(signal.SIGTERM, _terminate)
        spec = getattr(sys.modules.get(fn.__module__), "__spec__", None)  # under `python -m` the module is __main__
        stage_name = (spec.name if spec else fn.__module__).rpartition(".")[2]
        sections = _sections(stage_name) if kwargs.get("params_path") else None
        try:
            before = _read_sections(kwargs.get("params_path"), sections)
            result = fn(*args, **kwargs)
            after = _read_sections(kwargs.get("params_path"), sections)
            if before != after:
                raise PipelineError(_changed_while_running(stage_name, before, after, kwargs["params_path"]))
            return result
        except PipelineError as e:
            _remove_written()
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except KeyboardInterrupt as e:
            _remove_written()
            what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
            click.echo(f"{what}{': ' + str(e) if str(e) else ''}", err=True)
            sys.exit(128 + signal.SIGTERM if isinstance(e, Terminated) else 130)
        except SystemExit as e:
            if e.code not in (0, None):
                _remove_written()
            raise
        except Exception:
            _remove_written()
            raise

    return wrapper
