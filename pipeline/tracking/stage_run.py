"""A stage's MLflow run, in the stage's own process, through MLflow's own client.

MLflow is imported, the store opened and the run started on a thread while the stage
works (``with run:``, after the stage's own checks: a stage that stops at a check writes
nothing, not even a store); calls made meanwhile are kept and made once the run is open,
and those that need it (a result, a checkpoint) wait for it. Per-epoch metrics are
sent in one batch before each checkpoint and at the end: the store holds exactly the
epochs a checkpoint holds, and a resumed run logs each epoch once. The first MLflow error
(a server gone mid-run, a read-only store, a full disk) is one warning line and turns
tracking off for the rest of the stage, whose outputs are written as usual. Every call is
a no-op with ``BVAE_TRACKING=off`` and on DDP ranks other than 0; its time counts as
``tracking`` (:mod:`pipeline.hardware.timing`).
"""

import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable

from pipeline import interrupts
from pipeline.config.params import flatten, used
from pipeline.hardware import timing
from pipeline.tracking import registry, runs, store


def reason(e: BaseException) -> str:
    """The root cause of ``e`` in one short line (a database error, not the SQL around it)."""
    while e.__cause__ is not None or (e.__context__ is not None and not e.__suppress_context__):
        e = e.__cause__ or e.__context__
    text = " ".join(str(e).split("\n")[0].split())
    return f"{type(e).__name__}: {text[:197] + '...' if len(text) > 200 else text}"


def _tracked(method=None, *, waits: bool = False):
    """A call to MLflow: nothing when tracking is off; while the run opens, kept and made once
    it is open, unless it ``waits`` for it; its first error is one warning and turns tracking off."""
    if method is None:
        return functools.partial(_tracked, waits=waits)

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        if not self.enabled:
            return None
        if not waits and self._opening is not None and self._opening.is_alive():
            self._later.append((method, args, kwargs))
            return None
        with timing.part("tracking"):
            try:
                self._join()
                with interrupts.deferred():  # never cut in half: the calls after it (KILLED) must work
                    self._ready()
                    return method(self, *args, **kwargs)
            except Exception as e:  # noqa: BLE001 - tracking never costs the user their stage
                self.enabled = False
                goes_on = "continuing without tracking, the stage's outputs are still written"
                print(f"warning: MLflow tracking failed ({reason(e)}); {goes_on}", file=sys.stderr, flush=True)
                return None

    return call


class StageRun:
    """One stage's MLflow run. Making it checks that a tracking server answers (an unreachable
    one stops the stage here, before any work); ``with run:`` opens the run (on a thread),
    ``with run.resuming(run_id):`` continues that run (a resumed training). ``before_end``:
    a check run before the run is marked FINISHED (its error: FAILED). ``key``: what the stage
    runs on (:func:`stages.code_deps.stage_key`, computed while the run opens); a run of the
    same stage and key under the parent is continued, not repeated. The training stages pass
    none: they continue a run only from their checkpoint (a training from epoch 1 is a run of
    its own, its curves not appended to an earlier run's)."""

    def __init__(
        self,
        stage: str,
        params: dict,
        before_end: Callable[[], None] | None = None,
        key: Callable[[], str] | None = None,
    ):
        self.stage, self.params, self.before_end, self.key = stage, params, before_end, key
        self.enabled = store.tracking_enabled() and int(os.environ.get("RANK", "0")) == 0  # under DDP rank 0 logs
        self.run_id = self.parent_id = self.resume_run_id = self.client = self.exp_id = None
        self._pending: list[tuple] = []  # per-epoch metrics not sent yet: (key, value, timestamp ms, step)
        self._later: list[tuple] = []  # calls made while the run opens: (method, args, kwargs)
        self._opening = self._failure = self._join_timeout = None
        timing.record(stage)
        if not self.enabled:
            return
        self.uri = store.tracking_uri()
        store.check_reachable(self.uri)
        self.artifacts = store.artifact_root(self.uri)
        for name, value in (("MAX_RETRIES", "2"), ("TIMEOUT", "20")):  # a server: fail in seconds, not minutes
            os.environ.setdefault(f"MLFLOW_HTTP_REQUEST_{name}", value)

    def resuming(self, run_id: str | None) -> "StageRun":
        self.resume_run_id = run_id  # continued when the block opens (None: a new run)
        return self

    def __enter__(self):
        if self.enabled:
            self._opening = threading.Thread(target=self._open, name="mlflow-open", daemon=True)
            self._opening.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None and self.before_end is not None:
            try:
                self.before_end()
            except BaseException as e:
                self._end(type(e))
                raise
        self._end(exc_type)
        return False

    def _ready(self) -> None:
        """Wait until the run is open, then make the calls kept meanwhile."""
        self._join()
        if self._failure is not None:
            raise self._failure
        later, self._later = self._later, []
        for method, args, kwargs in later:
            method(self, *args, **kwargs)

    def _join(self) -> None:
        """Wait until the run is open (a Ctrl-C stops the wait)."""
        if self._opening is not None:
            self._opening.join(self._join_timeout)
            if self._opening.is_alive():
                raise TimeoutError(f"MLflow did not answer in {self._join_timeout:.0f} s; the run may show as running")
            self._opening = None

    def _open(self) -> None:
        """On a thread, while the stage works: import MLflow, open the store (a new sqlite one
        by one process at a time), start (or continue ``resume_run_id``) the stage's run under
        its parent and record its code."""
        try:
            import mlflow
            from mlflow.tracking.context.registry import resolve_tags

            logging.getLogger("mlflow.store").setLevel(logging.CRITICAL)  # its errors: one warning, not a traceback
            mlflow.set_tracking_uri(self.uri)  # for log_model's fluent calls, in any working folder
            with store.opening(self.uri):
                self.client = mlflow.MlflowClient(self.uri)
                self.exp_id = runs.experiment_id(self.client, self.artifacts)
            commit, diff = runs.code_state()
            tags = runs.stage_tags(self.stage, self.params, commit, bool(diff))
            if self.key is not None:
                tags[runs.KEY_TAG] = self.key()
            if not (self.resume_run_id and self._resume(tags, "of the checkpoint")):
                self.parent_id, parent_name = runs.parent_run(self.client, self.exp_id, tags, self.params)
                same = self.key is not None and runs.stage_run(self.client, self.exp_id, self.parent_id, tags)
                if not (same and self._resume(tags, "of the same stage, params, code and inputs", same)):
                    tags = resolve_tags(tags | {"mlflow.parentRunId": self.parent_id})
                    run = self.client.create_run(self.exp_id, tags=tags, run_name=f"{self.stage} · {parent_name}")
                    self.run_id = run.info.run_id
                    print(f"MLflow: stage run {self.run_id} (parent {self.parent_id}) in {self.uri}", flush=True)
            if diff:
                self.client.log_text(self.run_id, diff, runs.DIFF_FILE)
            if self.parent_id:
                runs.note_code(self.client, self.parent_id, self.stage, commit, diff)
                if self.client.get_run(self.parent_id).info.status != "RUNNING":  # it follows its running stage
                    self.client.update_run(self.parent_id, status="RUNNING")
        except Exception as e:  # noqa: BLE001 - reported by the next call
            self._failure = e

    def _resume(self, tags: dict, which: str, run_id: str | None = None) -> bool:
        """Continue the run ``run_id`` (default ``resume_run_id``; ``which``: why) if the store has it."""
        from mlflow.entities import RunTag

        run_id = run_id or self.resume_run_id
        try:
            run = self.client.get_run(run_id)
        except Exception:  # noqa: BLE001 - deleted, or another store
            print(f"MLflow: run {run_id} {which} not found; starting a new run", flush=True)
            return False
        self.run_id, self.parent_id = run_id, run.data.tags.get("mlflow.parentRunId")
        self.client.update_run(self.run_id, status="RUNNING")
        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        print(f"MLflow: continuing stage run {self.run_id} {which} (parent {self.parent_id})", flush=True)
        return True

    def _end(self, exc_type) -> None:
        """The last metrics, the stage's timing and its end status, which the parent takes too
        (FINISHED after its last stage that ran, FAILED or KILLED when one fails or stops)."""
        interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)  # Ctrl-C or SIGTERM
        if interrupted:
            self._join_timeout = 10.0  # seconds a stopped stage waits for its run to open, at most
        self.flush()
        spent = timing.CLOCK.summary()
        wall, share = spent.pop("wall"), spent.pop("overhead_share")
        self.log_metrics(
            {"stage_wall_time_s": wall, "overhead_share": share} | {f"time_{k}_s": v for k, v in spent.items()}
        )
        self._finish("FINISHED" if exc_type is None else "KILLED" if interrupted else "FAILED")

    @_tracked(waits=True)
    def _finish(self, status: str) -> None:
        import mlflow

        if mlflow.active_run():  # log_model's
            mlflow.end_run(status=status)
        elif self.run_id:  # None: the stage ended before it opened its run
            self.client.set_terminated(self.run_id, status)
        if self.parent_id:
            self.client.set_terminated(self.parent_id, status)

    # -- logging (all no-ops when tracking is off; ``parent``: on the parent run instead) --

    @_tracked
    def log_params(self, params: dict, parent: bool = False) -> None:
        """The params the configuration uses, flattened; the parent's keep their first value."""
        from mlflow.entities import Param

        params, have = flatten(used(params)), {}
        if parent:
            have = self.client.get_run(self.parent_id).data.params if self.parent_id else params
            for key in [k for k in params if k in have and have[k] != str(params[k])]:
                print(f"MLflow: the parent run keeps {key}={have[key]} (this run: {params[key]})", file=sys.stderr)
        new = [Param(k, str(v)) for k, v in params.items() if k not in have]
        if new:
            self.client.log_batch(self.parent_id if parent else self.run_id, params=new)

    @_tracked
    def log_metrics(self, metrics: dict, step: int | None = None, parent: bool = False) -> None:
        """Metrics under ``<stage>/`` (``train_vae/gamma``, ``train_stage2/gamma``: never one chart in
        the MLflow UI); the parent's (the pipeline's headline metrics) as given."""
        from mlflow.entities import Metric

        run_id, prefix = (self.parent_id, "") if parent else (self.run_id, f"{self.stage}/")
        now = int(time.time() * 1000)
        if run_id and metrics:
            self.client.log_batch(
                run_id, metrics=[Metric(prefix + k, float(v), now, step or 0) for k, v in metrics.items()]
            )

    def log_epoch(self, metrics: dict, step: int) -> None:
        """Per-epoch metrics (as :meth:`log_metrics`), kept until :meth:`flush`."""
        if self.enabled:
            now = int(time.time() * 1000)
            self._pending += [(f"{self.stage}/{k}", float(v), now, step) for k, v in metrics.items()]

    @_tracked(waits=True)
    def flush(self) -> None:
        """Send the kept per-epoch metrics in one batch (before a checkpoint, so the store holds its epochs)."""
        from mlflow.entities import Metric

        pending, self._pending = self._pending, []
        if pending:
            self.client.log_batch(self.run_id, metrics=[Metric(*m) for m in pending])

    @_tracked
    def log_artifact(self, path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    @_tracked
    def set_tags(self, tags: dict) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    @_tracked
    def log_grid(self, image, name: str, step: int | None = None, parent: bool = False) -> None:
        """``grids/<name>.png`` (the latest) and, with ``step``, an entry of the ``name`` image timeline;
        on the parent ``<name>.png`` at its root, where MLflow 3.17's Compare view shows images."""
        if parent:
            if self.parent_id:
                self.client.log_image(self.parent_id, image, artifact_file=f"{name}.png")
            return
        self.client.log_image(self.run_id, image, artifact_file=f"grids/{name}.png")
        if step is not None:
            self.client.log_image(self.run_id, image, key=name, step=step)

    @_tracked(waits=True)
    def log_model(self, model, name: str, example, register=None, metrics=None, score=None, parent=False, about=None):
        """Log a torch module as an MLflow model, an output of the parent too, tagged with
        ``about``; with ``register`` (``evaluate.register``) a new registered version
        (:mod:`pipeline.tracking.registry`). Returns what happened, in a line."""
        import mlflow

        if not mlflow.active_run():  # mlflow.pytorch.log_model logs to the active run
            mlflow.start_run(run_id=self.run_id)
        model_id = registry.log_model(self.client, model, name, example, parent and self.parent_id, self.exp_id, about)
        if register and register.get("name"):
            return registry.register(self.client, register, model_id, self.parent_id, metrics or {}, score, about)
        return None

    @_tracked
    def log_input(self, name: str, source: str, digest: str, parent: bool = False) -> None:
        """The raw data as a training dataset input (``digest``: a content hash, MLflow keeps 36 characters)."""
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.data.sources import LocalArtifactDatasetSource
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        dataset = MetaDataset(LocalArtifactDatasetSource(source), name=name, digest=digest[:36])
        entry = DatasetInput(dataset._to_mlflow_entity(), [InputTag(MLFLOW_DATASET_CONTEXT, "training")])
        if run_id := self.parent_id if parent else self.run_id:  # a resumed run may name no parent
            self.client.log_inputs(run_id, datasets=[entry])
