"""The MLflow calls of one stage run, made in the stage's tracking process.

:class:`pipeline.tracking.stage_run.StageRun` starts one process per stage (when tracking is on)
and hands it every call in order; this module is what that process runs: it imports
MLflow, opens the store, finds or creates the runs (:mod:`pipeline.tracking.runs`) and logs.
The first MLflow error (a tracking server gone mid-run, a full disk) prints one warning
and turns tracking off for the rest of the stage; the stage's outputs are written as usual.
"""

import atexit
import logging
import os
import signal
import sys
import time
from pathlib import Path

from pipeline.config.params import flatten, used
from pipeline.tracking import runs, store

_RUN = None  # this process's RunCalls, made by the first call ("connect")


def start() -> None:
    """Initialiser of the tracking process: Ctrl-C and SIGTERM (sent to the whole process
    group by SLURM, a shell) are for the stage, which then ends the run here. It keeps the
    stage's CPU priority (:mod:`pipeline.tracking.stage_run` says why). MLflow's store
    logs no errors of its own (a read-only store wrote 90 lines of SQLAlchemy traceback):
    the first failure is one warning line (:func:`call`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.getLogger("mlflow.store").setLevel(logging.CRITICAL)
    if "torch" in sys.modules:  # a copy of a stage (forked): one thread for the example a logged model runs
        sys.modules["torch"].set_num_threads(1)


def call(name: str, *args, **kwargs) -> tuple[bool, object, float]:
    """Run ``RunCalls.<name>`` (``connect`` first); returns (ok, result, seconds). After a
    failure every later call is skipped (ok False)."""
    global _RUN
    t0 = time.perf_counter()
    if name != "connect" and (_RUN is None or not _RUN.enabled):
        return False, None, 0.0
    try:
        if name == "connect":
            _RUN = RunCalls()
        result = getattr(_RUN, name)(*args, **kwargs)
        return True, result, time.perf_counter() - t0
    except Exception as e:
        if _RUN is not None:
            _RUN.enabled = False
        print(
            f"warning: MLflow tracking failed ({reason(e)}); continuing without tracking, the stage's outputs "
            "are still written",
            file=sys.stderr,
            flush=True,
        )
        return False, None, time.perf_counter() - t0


def reason(e: BaseException) -> str:
    """The root cause of ``e`` in one short line (a database error, not the SQL around it)."""
    while e.__cause__ is not None or (e.__context__ is not None and not e.__suppress_context__):
        e = e.__cause__ or e.__context__
    text = " ".join(str(e).split("\n")[0].split())
    return f"{type(e).__name__}: {text[:197] + '...' if len(text) > 200 else text}"


class RunCalls:
    """One stage's MLflow run and everything logged to it."""

    def __init__(self):
        self.enabled = True
        self.client = None
        self.run_id = None
        self.parent_id = None
        self.exp_id = None
        self.uri = None
        self.artifacts = None

    def connect(self, uri: str, artifacts: str | None) -> None:
        """Import MLflow and open the store and the experiment, while the stage starts. A
        sqlite store that does not exist yet is created by :meth:`open`, once the stage has
        checked its inputs: a stage that stops at a check writes nothing, not even a store."""
        import mlflow

        if store.is_server(uri):  # fail in seconds, not after minutes of retries
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        mlflow.set_tracking_uri(uri)
        self.uri, self.artifacts = uri, artifacts
        if not uri.startswith("sqlite:///") or Path(uri[len("sqlite:///") :]).is_file():
            self._experiment()

    def _experiment(self) -> None:
        from mlflow import MlflowClient

        with store.opening(self.uri):  # a new sqlite store is created by one process at a time
            self.client = MlflowClient(self.uri)
            self.exp_id = runs.experiment_id(self.client, self.artifacts)

    def open(self, stage: str, params: dict, resume_run_id: str | None) -> str:
        """Start (or, with ``resume_run_id``, continue) the stage's run under its parent, and
        record the code it runs; returns its id."""
        import mlflow

        if self.exp_id is None:
            self._experiment()
        commit, diff = runs.code_state()
        tags = runs.stage_tags(stage, params, commit, bool(diff))
        if not (resume_run_id and self._resume(resume_run_id, tags)):
            self.parent_id, parent_name = runs.parent_run(self.client, self.exp_id, tags, params)
            run = mlflow.start_run(
                experiment_id=self.exp_id, run_name=f"{stage} · {parent_name}", parent_run_id=self.parent_id, tags=tags
            )
            self.run_id = run.info.run_id
            print(f"MLflow: stage run {self.run_id} (parent {self.parent_id}) in {self.uri}", flush=True)
        if diff:
            mlflow.log_text(diff, runs.DIFF_FILE)
        if self.parent_id:
            runs.note_code(self.client, self.parent_id, stage, commit, diff)
        self._parent_running()
        return self.run_id

    def _parent_running(self) -> None:
        """The parent run is RUNNING while one of its stages runs (:meth:`end` sets its end status)."""
        if self.parent_id and self.client.get_run(self.parent_id).info.status != "RUNNING":
            self.client.update_run(self.parent_id, status="RUNNING")

    def warm_up(self) -> None:
        """Import what logging a model needs (torch, mlflow.pytorch) before the stage asks."""
        import mlflow.pytorch  # noqa: F401
        import torch  # noqa: F401

    def _resume(self, run_id: str, tags: dict) -> bool:
        """Continue the run ``run_id`` when the store still has it."""
        import mlflow

        try:
            run = self.client.get_run(run_id)
        except Exception:
            print(f"MLflow: run {run_id} of the checkpoint not found; starting a new run", flush=True)
            return False
        self.run_id = mlflow.start_run(run_id=run_id, tags=tags).info.run_id
        self.parent_id = run.data.tags.get("mlflow.parentRunId")
        print(f"MLflow: resuming stage run {self.run_id} (parent {self.parent_id})", flush=True)
        return True

    def end(self, status: str) -> None:
        """End the run, and the parent run with the same status (FINISHED after the last stage
        that ran, `dvc repro train_vae` included; FAILED or KILLED when a stage fails or stops).
        This process then exits at once when told to, without tearing down MLflow and torch
        (a second the stage would otherwise wait for): everything is written."""
        import mlflow

        if self.run_id is None:  # the stage ended before it opened its run
            return
        mlflow.end_run(status=status)
        if self.parent_id:
            self.client.set_terminated(self.parent_id, status)
        sys.stdout.flush()
        sys.stderr.flush()
        atexit.register(os._exit, 0)  # registered last, so it runs first

    def log_params(self, params: dict) -> None:
        import mlflow

        mlflow.log_params({k: str(v) for k, v in flatten(used(params)).items()})

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        import mlflow

        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_batch(self, metrics: list[tuple]) -> None:
        """Metrics as (key, value, timestamp ms, step), in batches of 1,000 (MLflow's limit)."""
        from mlflow.entities import Metric

        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=[Metric(*m) for m in metrics[i : i + 1000]])

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        import mlflow

        mlflow.log_artifact(path, artifact_path=artifact_path)

    def log_grid(self, image, name: str, step: int | None = None, parent: bool = False) -> None:
        """``grids/<name>.png`` (the latest grid, under a name every run of the stage shares) and,
        with ``step``, an entry of the ``name`` image timeline (the run page's step slider).
        On the parent run (``parent``): ``<name>.png`` at the artifact root, where MLflow's Compare
        view looks (it shows the files at the root that every compared run has, MLflow 3.17)."""
        if parent:
            self.client.log_image(self.parent_id, image, artifact_file=f"{name}.png")
            return
        self.client.log_image(self.run_id, image, artifact_file=f"grids/{name}.png")
        if step is not None:
            self.client.log_image(self.run_id, image, key=name, step=step)

    def log_model(
        self,
        model,
        name: str,
        example,
        register_as: str | None = None,
        alias: str | None = None,
        champion: str | None = None,
        score: str | None = None,
        metrics: dict | None = None,
        parent: bool = False,
    ) -> str | None:
        """Pickle serialisation with this package's code bundled (``code_paths``), so the model
        loads with ``mlflow.pytorch.load_model`` wherever torch is installed (MLflow's warning
        about pickle is therefore silenced). With ``register_as``: a new registered version,
        described and tagged with ``metrics`` (:mod:`pipeline.tracking.registry`), ``alias`` pointed at
        it and ``champion`` moved to it if its ``score`` is the best; returns what happened. With
        ``parent`` the model's source run is the parent run (the UI's Models column lists a model
        by its source run) and among the parent's outputs too; a registered version's source run is
        the parent: the configuration's row and page in the UI show what it produced."""
        import mlflow
        import torch
        from mlflow.entities import LoggedModelOutput
        from mlflow.models import infer_signature

        from pipeline.tracking import registry

        with torch.no_grad():
            out = model(example)
        parent = parent and self.parent_id is not None
        model_id = None
        if parent:
            model_id = mlflow.initialize_logged_model(
                name, source_run_id=self.parent_id, experiment_id=self.exp_id
            ).model_id
        logger = logging.getLogger("mlflow.pytorch")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            info = mlflow.pytorch.log_model(
                model,
                name=name,
                signature=infer_signature(example.cpu().numpy(), out.cpu().numpy()),
                input_example=example.cpu().numpy(),
                serialization_format="pickle",
                code_paths=[str(Path(__file__).parent)],
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
                model_id=model_id,
            )
        finally:
            logger.setLevel(level)
        if parent:
            self.client.log_outputs(self.parent_id, [LoggedModelOutput(info.model_id, 0)])
        if not register_as:
            return None
        version = registry.new_version(self.client, register_as, info.model_id, self.parent_id or self.run_id)
        tags = registry.describe_version(self.client, register_as, str(version), metrics or {}, self.parent_id, score)
        said = [f"registered model {register_as} version {version}"]
        if alias:
            self.client.set_registered_model_alias(register_as, alias, version)
            said.append(f"@{alias} -> version {version}")
        if champion:
            said.append(registry.promote(self.client, register_as, str(version), tags, champion))
        return "; ".join(said)

    def log_input(self, name: str, source: str, digest: str, parent: bool = False) -> None:
        """The dataset as a training input of this run (or of the parent run)."""
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.data.sources import LocalArtifactDatasetSource
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        if parent and self.parent_id is None:  # a resumed run that names no parent
            return
        dataset = MetaDataset(LocalArtifactDatasetSource(source), name=name, digest=digest[:36])
        entry = DatasetInput(dataset._to_mlflow_entity(), [InputTag(MLFLOW_DATASET_CONTEXT, "training")])
        self.client.log_inputs(self.parent_id if parent else self.run_id, datasets=[entry])

    def log_parent_params(self, params: dict) -> None:
        """Params of the whole configuration on the parent run. MLflow keeps a param's first
        value: one the parent already has with another value is said, not changed."""
        from mlflow.entities import Param

        if self.parent_id is None:  # a resumed run that names no parent
            return
        have = self.client.get_run(self.parent_id).data.params
        for key, value in params.items():
            if key in have and have[key] != str(value):
                print(f"MLflow: the parent run keeps {key}={have[key]} (this run: {value})", file=sys.stderr)
        new = [Param(k, str(v)) for k, v in params.items() if k not in have]
        if new:
            self.client.log_batch(self.parent_id, params=new)

    def set_tags(self, tags: dict) -> None:
        import mlflow

        mlflow.set_tags(tags)

    def log_parent_metrics(self, metrics: dict) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.parent_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
