"""What every command shares and what `--help` needs: the --params option and the error
wrappers. Imports only click, so `--help` starts without torch or MLflow."""

import functools
import os
import signal
import sys

import click

from pipeline import PipelineError
from pipeline.interrupts import Terminated, install

params_option = click.option(
    "--params",
    "params_path",
    type=click.Path(dir_okay=False),
    default="params.yaml",
    show_default=True,
    help="Params file to read (DVC tracks params.yaml).",
)


STOP_SAID = "BVAE_STOP_SAID_BY_PARENT"  # set by a parent that prints the one line itself (bvae answer)


def command(fn):
    """Run a command: a user error (:class:`PipelineError`) prints one line and exits 2;
    Ctrl-C exits 130, SIGTERM 143 (128 + the signal's number), each with one line."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        install()
        try:
            return fn(*args, **kwargs)
        except PipelineError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except KeyboardInterrupt as e:
            what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
            if not os.environ.get(STOP_SAID):
                click.echo(f"{what}{': ' + str(e) if str(e) else ''}", err=True)
            sys.exit(128 + signal.SIGTERM if isinstance(e, Terminated) else 130)

    return wrapper


class ParamsWatch:
    """The params sections a stage reads (its ``params:`` in dvc.yaml), as the file held them
    at the stage's start: :meth:`unchanged` fails when they changed on disk since, because
    DVC would record the new values beside outputs made with the old ones."""

    def __init__(self, stage: str, path, sections: tuple[str, ...]):
        self.stage, self.path, self.sections = stage, path, sections
        self.before = self._read()

    def _read(self) -> dict:
        """The params in the sections, flattened, as the file holds them now ({"error": ...}
        for a file that no longer loads)."""
        from pipeline.config.params import flatten, load_params

        try:
            params = flatten(load_params(self.path, validate=False))
        except PipelineError as e:
            return {"error": str(e)}
        return {k: v for k, v in params.items() if any(k == s or k.startswith(s + ".") for s in self.sections)}

    def key(self) -> str:
        """The stage's key (:func:`stages.code_deps.stage_key`) for the params it read at its start."""
        from stages.code_deps import stage_key

        return stage_key(self.stage, self.before)

    def finishing(self) -> None:
        """The stage's commit point, called once its outputs are written, before its MLflow run
        (and its parent) is marked FINISHED (:class:`pipeline.tracking.stage_run.StageRun`'s
        ``before_end``): the params must be :meth:`unchanged`; from here on Ctrl-C and SIGTERM
        are ignored, so the stage completes and exits 0. Stopped between FINISHED and its exit,
        it would remove the outputs that run records. A signal meant for the whole `dvc repro`
        still stops DVC, which then records nothing: the rerun finds the finished training's
        checkpoint (kept until a later stage starts, :func:`stages.runtime.drop_checkpoint`) and
        writes the same outputs again without training."""
        self.unchanged()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def unchanged(self) -> None:
        """Fails when the params sections changed on disk since the stage started."""
        from stages.layout import CHECKPOINTS

        after = self._read()
        if after == self.before:
            return
        if "error" in after:
            error = str(after["error"])
            prefix = f"{self.path} "
            what = f"and {error[len(prefix) :]}" if error.startswith(prefix) else f"and no longer loads ({error})"
        else:
            keys = sorted(set(self.before) | set(after))
            diff = [f"{k}: {self.before.get(k)} -> {after.get(k)}" for k in keys if self.before.get(k) != after.get(k)]
            what = f"({', '.join(diff[:3])}{f' and {len(diff) - 3} more' if len(diff) > 3 else ''})"
        kept = CHECKPOINTS / f"{self.stage}.pt"
        keep = f" ({kept} keeps its training: with the old values back it finishes without training again)"
        raise PipelineError(
            f"{self.path} changed while {self.stage} ran {what}: its outputs follow the values it read at its "
            f"start, so it fails and DVC records nothing; `dvc repro` runs it again{keep if kept.is_file() else ''}"
        )


def launch(module: str) -> None:
    """Re-run this command under torchrun when ``BVAE_NPROC`` > 1 (and not already under it):
    data-parallel training on N processes (:mod:`pipeline.training.distributed`)."""
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


def _stopped(name: str) -> str:
    """What a stage stopped before or after its training says: what `dvc repro` does next."""
    from stages.layout import CHECKPOINTS

    kept = CHECKPOINTS / f"{name}.pt"
    if kept.is_file():
        return f"{name} stopped; {kept} holds its training: dvc repro resumes"
    return f"{name} stopped before writing its outputs: dvc repro runs it again"


def _restore_hint(name: str) -> str:
    """The command that brings back the committed outputs of stage ``name`` (its metrics and
    plots, kept in git) that are now gone: DVC removes a stage's outputs before running it, so
    a stage that fails leaves them deleted. It is a line of its own, after the error's. "" when
    none is gone (or git cannot say)."""
    import shlex
    import subprocess

    from stages.layout import METRICS, PLOTS

    paths = [str(METRICS / f"{name}.json"), str(METRICS / "all" / f"{name}.json"), str(PLOTS / name)]
    try:
        listed = subprocess.run(["git", "ls-files", "--deleted", "--", *paths], capture_output=True, text=True)
    except OSError:
        return ""
    gone = [p for p in paths if any(d == p or d.startswith(p + "/") for d in listed.stdout.splitlines())]
    if listed.returncode or not gone:
        return ""
    return (
        f"note: {name}'s committed outputs are gone (DVC removes a stage's outputs before it runs it): "
        f"`git checkout -- {shlex.join(gone)}` brings them back"
    )


def stage(name: str, *sections: str):
    """A DVC stage's command (``name``, reading the params ``sections`` that its ``params:`` in
    dvc.yaml lists: a test checks they agree): as :func:`command`, and the body receives the
    params, validated, and a :class:`ParamsWatch` of its sections; a stage that fails or is
    stopped leaves none of its outputs."""

    def wrap(fn):
        @functools.wraps(fn)
        @command
        def wrapper(params_path):
            from pipeline.config.params import load_params

            try:
                params = load_params(params_path)  # checked before torch is imported: a bad key fails at once
                return fn(params, ParamsWatch(name, params_path, sections))
            except BaseException as e:
                if isinstance(e, SystemExit) and e.code in (0, None):
                    raise
                _remove_written()
                if isinstance(e, KeyboardInterrupt) and not str(e):  # stopped outside the training loop
                    e.args = (_stopped(name),)
                if not (hint := _restore_hint(name)):
                    raise
                if isinstance(e, PipelineError):  # the hint is the line after the error's
                    raise PipelineError(f"{e}\n{hint}") from None
                if isinstance(e, KeyboardInterrupt):
                    e.args = (f"{e}\n{hint}",)
                else:
                    click.echo(hint, err=True)
                raise

        wrapper.sections = sections
        return wrapper

    return wrap
