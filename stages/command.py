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
    from pipeline.config.params import flatten, load_params

    try:
        params = flatten(load_params(path, validate=False))
    except PipelineError as e:
        return {"error": str(e)}
    return {k: v for k, v in params.items() if any(k == s or k.startswith(s + ".") for s in sections)}


def _changed_while_running(stage_name: str, before: dict, after: dict, path) -> str:
    """The stage ran with the values it read at its start; DVC would record the new ones."""
    from stages.layout import CHECKPOINTS

    if "error" in after:
        error = str(after["error"])
        what = (
            f"and {error[len(str(path)) + 1 :]}" if error.startswith(f"{path} ") else f"and no longer loads ({error})"
        )
    else:
        keys = sorted(set(before) | set(after))
        diff = [f"{k}: {before.get(k)} -> {after.get(k)}" for k in keys if before.get(k) != after.get(k)]
        what = f"({', '.join(diff[:3])}{f' and {len(diff) - 3} more' if len(diff) > 3 else ''})"
    kept = CHECKPOINTS / f"{stage_name}.pt"
    keep = f" ({kept} keeps its training: with the old values back it finishes without training again)"
    return (
        f"{path} changed while {stage_name} ran {what}: its outputs follow the values it read at its start, so it "
        f"fails and DVC records nothing; `dvc repro` runs it again{keep if kept.is_file() else ''}"
    )


_WATCH: dict = {}  # the params file of the stage that runs, the sections it reads, and their values at its start


def params_unchanged() -> None:
    """Fail (PipelineError) when the params sections the running stage reads changed on disk
    since it started: DVC would record the new values beside outputs made with the old
    ones. A stage calls it before its MLflow run is marked FINISHED and before it removes
    its checkpoint (:class:`pipeline.tracking.stage_run.StageRun`'s ``before_end``)."""
    if not _WATCH:
        return
    after = _read_sections(_WATCH["path"], _WATCH["sections"])
    if after != _WATCH["before"]:
        raise PipelineError(_changed_while_running(_WATCH["stage"], _WATCH["before"], after, _WATCH["path"]))


def launch(module: str) -> None:
    """Re-run this command under torchrun when ``BVAE_NPROC`` > 1 (and not already under it):
    data-parallel training on N processes (:mod:`pipeline.training.distributed`). Called before the
    stage imports torch or starts its tracking process, which the new processes do."""
    import os
    import shutil

    nproc = int(os.environ.get("BVAE_NPROC", "1"))
    if nproc > 1 and "LOCAL_RANK" not in os.environ:
        torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
        args = [torchrun, "--standalone", f"--nproc_per_node={nproc}", "-m", module, *sys.argv[1:]]
        print(" ".join(args), flush=True)
        os.execv(torchrun, args)


def _remove_written() -> None:
    """A stage that fails leaves none of its outputs (not some of them): remove those it wrote.
    Checkpoints are not outputs and stay, for the resume."""
    files = sys.modules.get("pipeline.files")
    if files is None:  # never imported: nothing written
        return
    for path in files.WRITTEN:
        path.unlink(missing_ok=True)
        try:
            path.parent.rmdir()  # an output folder (plots/train_vae) left empty
        except OSError:
            pass
    files.WRITTEN.clear()


LAST_STAGE = "evaluate"  # no stage follows it in dvc.yaml


def stage(fn):
    """Run a stage body: user errors print one line and exit 2; Ctrl-C exits 130, SIGTERM
    143 (128 + the signal's number)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        signal.signal(signal.SIGTERM, _terminate)
        spec = getattr(sys.modules.get(fn.__module__), "__spec__", None)  # under `python -m` the module is __main__
        stage_name = (spec.name if spec else fn.__module__).rpartition(".")[2]
        sections = _sections(stage_name) if kwargs.get("params_path") else None
        slot = None
        if sections is not None:  # a DVC stage: in a queue, a CPU slot before anything else (imports included)
            from pipeline.hardware import cpu_slots
            from pipeline.hardware.cpu_load import available_cpus

            slot = cpu_slots.hold(stage_name, available_cpus())
        _WATCH.clear()
        before = _read_sections(kwargs.get("params_path"), sections)
        if before is not None:
            _WATCH.update(path=kwargs["params_path"], sections=sections, before=before, stage=stage_name)
        try:
            result = fn(*args, **kwargs)
            if slot is not None and stage_name != LAST_STAGE:  # the experiment's next stage keeps the CPU
                cpu_slots.keep_for_next(slot)
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
