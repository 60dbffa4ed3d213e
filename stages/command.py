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
        try:
            return fn(*args, **kwargs)
        except PipelineError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except KeyboardInterrupt as e:
            what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
            click.echo(f"{what}{': ' + str(e) if str(e) else ''}", err=True)
            sys.exit(128 + signal.SIGTERM if isinstance(e, Terminated) else 130)

    return wrapper
