"""Which MLflow store a stage writes to, and whether it answers.

``MLFLOW_TRACKING_URI`` when set (a team's ``mlflow server``), else a sqlite file
``mlflow.db`` at the repository root with artifacts in ``mlartifacts/``, both as
absolute paths, so that ``dvc exp run --temp`` / ``--queue`` (which run in copies
under ``.dvc/tmp/exps/``) write to the same store. ``BVAE_TRACKING=off`` turns
tracking off (offline runs); the stages' outputs do not depend on it.
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


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def own_store() -> bool:
    """True when the stages use the project's own sqlite store (no MLFLOW_TRACKING_URI)."""
    return not os.environ.get("MLFLOW_TRACKING_URI")


def artifact_root() -> str | None:
    """Where a new experiment keeps its artifacts: ``mlartifacts/`` beside our own store;
    a tracking server decides for itself (None)."""
    return (repo_root() / "mlartifacts").as_uri() if own_store() else None


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
    must accept a connection and answer an HTTP request (its ``/health``) within ``timeout``
    seconds. Any answer will do (an error status too): only silence stops the stage."""
    import urllib.error
    import urllib.request

    url = urlparse(uri)
    if not is_server(uri):
        return
    port = url.port or (443 if url.scheme == "https" else 80)
    fix = ("Start it, unset MLFLOW_TRACKING_URI to use the local store, or set BVAE_TRACKING=off to run without "
           "tracking.")  # fmt: skip
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as e:
        raise PipelineError(f"MLflow tracking server {uri} is unreachable ({e}). {fix}") from None
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        pass  # it answered
    except (OSError, ValueError) as e:
        raise PipelineError(f"MLflow tracking server {uri} accepts connections but did not answer within "
                            f"{timeout:.0f} s ({e}). {fix}") from None  # fmt: skip
