"""What every stage command shares and what `--help` needs: the --params option and the
error wrapper. Imports only click, so `--help` starts without torch or MLflow."""

import functools
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


def stage(fn):
    """Run a stage body, in a warm server when one is up (:mod:`stages.warm`): user errors
    print one line and exit 2; Ctrl-C exits 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from stages import warm

        code = warm.handoff()
        if code is not None:
            sys.exit(code)
        try:
            return fn(*args, **kwargs)
        except PipelineError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except KeyboardInterrupt as e:
            click.echo(f"interrupted{': ' + str(e) if str(e) else ''}", err=True)
            sys.exit(130)

    return wrapper
