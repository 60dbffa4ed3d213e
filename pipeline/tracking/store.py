"""Which MLflow store a stage writes to, where its artifacts go, and whether it answers.

``MLFLOW_TRACKING_URI`` when set (a team's ``mlflow server``, or a shared database),
else a sqlite file ``mlflow.db`` at the repository root, as an absolute path, so that
``dvc exp run --temp`` / ``--queue`` (which run in copies under ``.dvc/tmp/exps/``)
write to the same store. A new experiment keeps its artifacts beside its store: in
``mlartifacts/`` beside a sqlite file, wherever a tracking server decides, or at
``MLFLOW_DEFAULT_ARTIFACT_ROOT`` (the variable ``mlflow server`` reads) when that is
set; never in the working folder of the process that made the experiment.
``BVAE_TRACKING=off`` turns tracking off (offline runs); the stages' outputs do not
depend on it.
"""

import os
import socket
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from pipeline import PipelineError


def repo_root(cwd: str | Path | None = None) -> Path:
    """The project root; inside DVC's experiment copies (``<root>/.dvc/tmp/exps/...``) the original root."""
    path = Path(cwd or os.getcwd()).resolve()
    parts = path.parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return path


EXPERIMENT = "balanced-vae"  # the MLflow experiment, unless MLFLOW_EXPERIMENT_NAME names another


def experiment_name() -> str:
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def artifact_root(uri: str) -> str | None:
    """Where a new experiment in the store ``uri`` keeps its artifacts (None: the tracking
    server decides). MLflow's own default for a database store is ``./mlruns`` of the
    process that creates the experiment: with a shared database, one clone's ignored folder
    would hold every clone's artifacts."""
    if configured := os.environ.get("MLFLOW_DEFAULT_ARTIFACT_ROOT"):
        return configured
    if is_server(uri):
        return None
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").as_uri()
    raise PipelineError(
        f"MLFLOW_TRACKING_URI={uri}: a database without a folder beside it for the runs' artifacts; "
        "set MLFLOW_DEFAULT_ARTIFACT_ROOT (a shared folder, s3://...) or track through `mlflow server`"
    )


def tracking_enabled() -> bool:
    return os.environ.get("BVAE_TRACKING", "on").lower() not in ("0", "off", "false", "no")


def is_server(uri: str) -> bool:
    return urlparse(uri).scheme in ("http", "https")


@contextmanager
def opening(uri: str):
    """Hold an exclusive lock (``<store>.lock`` beside a sqlite store) while the store is
    opened: MLflow creates and migrates a new sqlite store on first use, and two processes
    doing that at once (two `dvc exp run`, `dvc queue start -j 2` on a fresh store) crash
    in its migration. Under the lock the first creates it and the others find it ready."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    path = Path(uri[len("sqlite:///") :])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not minutes of retries, when a tracking server does not answer: it
    must accept a connection and answer HTTP requests within ``timeout`` seconds, both its
    ``/health`` and a call of its API that reads the store (a server whose database hangs
    still answers ``/health``). Any answer will do (an error status too): only silence
    stops the stage."""
    import urllib.error
    import urllib.parse
    import urllib.request

    url = urlparse(uri)
    if not is_server(uri):
        return
    port = url.port or (443 if url.scheme == "https" else 80)
    fix = (
        "Start it, unset MLFLOW_TRACKING_URI to use the local store, or set BVAE_TRACKING=off to run without tracking."
    )
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as e:
        raise PipelineError(f"MLflow tracking server {uri} is unreachable ({e}). {fix}") from None
    api = f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={urllib.parse.quote(experiment_name())}"
    for path, what in (
        ("/health", "its /health did not answer"),
        (api, "its API (the store behind it) did not answer, though /health did,"),
    ):
        try:
            urllib.request.urlopen(f"{uri.rstrip('/')}{path}", timeout=timeout).close()
        except urllib.error.HTTPError:
            pass  # it answered
        except (OSError, ValueError) as e:
            reason = " ".join(str(getattr(e, "reason", e)).split())
            raise PipelineError(
                f"MLflow tracking server {uri} accepts connections but {what} within {timeout:.0f} s ({reason}). {fix}"
            ) from None
