"""MLflow tracking: one parent run per pipeline configuration, one child run per stage.

Store: ``MLFLOW_TRACKING_URI`` when set (a team's ``mlflow server``), else a sqlite
file ``mlflow.db`` at the repository root with artifacts in ``mlartifacts/``, both
as absolute paths, so that ``dvc exp run --temp`` / ``--queue`` (which run in copies
under ``.dvc/tmp/exps/``) write to the same store. Experiment name:
``MLFLOW_EXPERIMENT_NAME`` or ``balanced-vae``. ``BVAE_TRACKING=off`` turns
tracking off (offline runs); the stages' outputs do not depend on it.

DVC runs each stage in its own process, so MLflow's in-process nesting cannot
link them: every stage finds (or creates) the parent run whose tag
``bvae.config_hash`` is the hash of the whole params.yaml, and starts its own run
with ``parent_run_id``. The parent carries all params, the git commit and the
final metrics.
"""

import functools
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from pipeline import PipelineError
from pipeline.params import config_hash, flatten

DEFAULT_EXPERIMENT = "balanced-vae"
CONFIG_TAG = "bvae.config_hash"
ROLE_TAG = "bvae.role"  # "pipeline" on parent runs, "stage" on stage runs


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


def tracking_enabled() -> bool:
    return os.environ.get("BVAE_TRACKING", "on").lower() not in ("0", "off", "false", "no")


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def check_reachable(uri: str, timeout: float = 3.0) -> None:
    """Fail in seconds, not minutes of retries, when a tracking server does not answer."""
    url = urlparse(uri)
    if url.scheme not in ("http", "https"):
        return
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as e:
        raise PipelineError(
            f"MLflow tracking server {uri} is unreachable ({e}). Start it, unset MLFLOW_TRACKING_URI to use the "
            f"local store, or set BVAE_TRACKING=off to run without tracking."
        ) from None


def tolerant(method):
    """A logging call that must not cost the user their training: the first MLflow error
    (a tracking server gone mid-run, a full disk) prints one warning and switches
    tracking off for the rest of the stage; the stage's outputs are written as usual."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if not self.enabled:
            return None
        try:
            return method(self, *args, **kwargs)
        except Exception as e:
            self.enabled = False
            reason = " ".join(f"{type(e).__name__}: {e}".split())[:300]
            print(f"warning: MLflow tracking failed ({reason}); continuing without tracking, the stage's outputs "
                  "are still written", file=sys.stderr)  # fmt: skip
            return None

    return wrapper


FLUSH_SECONDS = 10.0  # how stale the MLflow UI's live curves may be while a stage trains


class StageRun:
    """Context manager around one stage's MLflow run (a no-op when tracking is off).
    ``resume_run_id``: continue that run (a training stage resuming from a checkpoint)."""

    def __init__(self, stage: str, params: dict, resume_run_id: str | None = None):
        self.stage = stage
        self.params = params
        self.resume_run_id = resume_run_id
        self.enabled = tracking_enabled() and int(os.environ.get("RANK", "0")) == 0  # under DDP rank 0 logs
        self.run_id = None
        self.parent_id = None
        self._t0 = time.perf_counter()
        self._pending: list[tuple] = []  # per-epoch metrics not sent yet: (key, value, timestamp ms, step)
        self._flushed = time.perf_counter()

    def __enter__(self):
        if not self.enabled:
            return self
        uri = tracking_uri()
        own_store = "MLFLOW_TRACKING_URI" not in os.environ  # read before set_tracking_uri sets it
        check_reachable(uri)
        import mlflow
        from mlflow import MlflowClient

        if urlparse(uri).scheme in ("http", "https"):  # fail in seconds, not after minutes of retries
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        mlflow.set_tracking_uri(uri)
        self.client = MlflowClient(uri)
        if self.resume_run_id and self._resume():
            return self
        exp_id = self._experiment_id(artifacts=(repo_root() / "mlartifacts").as_uri() if own_store else None)
        commit = git_commit()
        tags = {"bvae.stage": self.stage, CONFIG_TAG: config_hash(self.params), ROLE_TAG: "stage"}
        if commit:
            tags["mlflow.source.git.commit"] = commit
        self.parent_id = self._parent_run(exp_id, tags)
        run = mlflow.start_run(experiment_id=exp_id, run_name=self.stage, parent_run_id=self.parent_id, tags=tags)
        self.run_id = run.info.run_id
        print(f"MLflow: stage run {self.run_id} (parent {self.parent_id}) in {uri}")
        return self

    def _resume(self) -> bool:
        """Continue the run ``resume_run_id`` when the store still has it."""
        import mlflow

        try:
            run = self.client.get_run(self.resume_run_id)
        except Exception:
            print(f"MLflow: run {self.resume_run_id} of the checkpoint not found; starting a new run")
            return False
        self.run_id = mlflow.start_run(run_id=self.resume_run_id).info.run_id
        self.parent_id = run.data.tags.get("mlflow.parentRunId")
        print(f"MLflow: resuming stage run {self.run_id} (parent {self.parent_id})")
        return True

    def __exit__(self, exc_type, exc, tb):
        self.flush()
        self.log_metrics({"stage_wall_time_s": time.perf_counter() - self._t0})
        self._end("FINISHED" if exc_type is None else "KILLED" if exc_type is KeyboardInterrupt else "FAILED")
        return False

    @tolerant
    def _end(self, status: str) -> None:
        import mlflow

        mlflow.end_run(status=status)

    def _experiment_id(self, artifacts: str | None) -> str:
        """Get or create the experiment; with our own sqlite store its artifacts go to ``artifacts``."""
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", DEFAULT_EXPERIMENT)
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=artifacts)
        except Exception:  # created meanwhile by a parallel stage
            return self.client.get_experiment_by_name(name).experiment_id

    def _parent_run(self, exp_id: str, tags: dict) -> str:
        query = f"tags.`{CONFIG_TAG}` = '{tags[CONFIG_TAG]}' AND tags.`{ROLE_TAG}` = 'pipeline'"
        found = self.client.search_runs([exp_id], filter_string=query, max_results=1)
        if found:
            return found[0].info.run_id
        from mlflow.entities import Param

        name = os.environ.get("DVC_EXP_NAME") or f"pipeline-{tags[CONFIG_TAG][:8]}"
        parent_tags = {k: v for k, v in tags.items() if k != "bvae.stage"} | {ROLE_TAG: "pipeline"}
        run = self.client.create_run(exp_id, run_name=name, tags=parent_tags)
        items = [Param(k, str(v)) for k, v in flatten(self.params).items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run.info.run_id, params=items[i : i + 100])
        return run.info.run_id

    # -- logging (all no-ops when tracking is off) --

    @tolerant
    def log_params(self, params: dict) -> None:
        import mlflow

        mlflow.log_params({k: str(v) for k, v in flatten(params).items()})

    @tolerant
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        import mlflow

        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_epoch(self, metrics: dict, step: int) -> None:
        """Per-epoch metrics, buffered: sent in one batch at most every FLUSH_SECONDS, before
        each checkpoint and when the stage ends (one store round trip instead of one an epoch)."""
        if not self.enabled:
            return
        now = int(time.time() * 1000)
        self._pending += [(k, float(v), now, step) for k, v in metrics.items()]
        if time.perf_counter() - self._flushed >= FLUSH_SECONDS:
            self.flush()

    @tolerant
    def flush(self) -> None:
        """Send the buffered per-epoch metrics (MLflow takes 1,000 a batch)."""
        from mlflow.entities import Metric

        pending, self._pending, self._flushed = self._pending, [], time.perf_counter()
        for i in range(0, len(pending), 1000):
            self.client.log_batch(self.run_id, metrics=[Metric(*m) for m in pending[i : i + 1000]])

    @tolerant
    def log_artifact(self, path, artifact_path: str | None = None) -> None:
        import mlflow

        mlflow.log_artifact(str(path), artifact_path=artifact_path)

    @tolerant
    def log_image(self, image, key: str, step: int | None = None, parent: bool = False) -> None:
        """An image timeline entry (``key``, ``step``) on this stage's run, or on the parent run."""
        self.client.log_image(self.parent_id if parent else self.run_id, image, key=key, step=step or 0)

    @tolerant
    def log_model(self, model, name: str, example, register_as: str | None = None, alias: str | None = None):
        """Log a torch module as an MLflow model (signature from ``example``); optionally
        register it and point ``alias`` at the new version. Returns the version or None.

        Pickle serialisation with this package's code bundled (``code_paths``), so the
        model loads with ``mlflow.pytorch.load_model`` wherever torch is installed.
        """
        import mlflow
        import torch
        from mlflow.models import infer_signature

        with torch.no_grad():
            out = model(example)
        info = mlflow.pytorch.log_model(
            model, name=name, signature=infer_signature(example.cpu().numpy(), out.cpu().numpy()),
            input_example=example.cpu().numpy(), serialization_format="pickle",
            code_paths=[str(Path(__file__).parent)], pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            registered_model_name=register_as,
        )  # fmt: skip
        version = info.registered_model_version
        if register_as and alias:
            self.client.set_registered_model_alias(register_as, alias, version)
        return version

    @tolerant
    def log_input(self, name: str, source: str, digest: str) -> None:
        """Record the raw data as this run's training dataset input: its ``name``, ``source``
        (a local path) and ``digest`` (a content hash; MLflow keeps its first 36 characters)."""
        import mlflow
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.data.sources import LocalArtifactDatasetSource

        dataset = MetaDataset(LocalArtifactDatasetSource(source), name=name, digest=digest[:36])
        mlflow.log_input(dataset, context="training")

    @tolerant
    def set_tags(self, tags: dict) -> None:
        import mlflow

        mlflow.set_tags(tags)

    @tolerant
    def finish_parent(self, metrics: dict) -> None:
        """Put the pipeline's final metrics on the parent run and mark it finished."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.parent_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
        self.client.set_terminated(self.parent_id, "FINISHED")
