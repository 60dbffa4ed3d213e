"""A stage's MLflow run: open it (:mod:`pipeline.tracking.store` says where, :mod:`pipeline.tracking.runs`
under which parent), log to it without ever costing the user their training, close it.

Every MLflow call runs in a separate tracking process (:mod:`pipeline.tracking.mlflow_calls`,
run by :class:`pipeline.tracking.worker.Worker`), in the order the stage made them. The process
starts when the stage makes its :class:`StageRun`: right after reading its params in a
stage that logs no model (a fresh interpreter, which imports MLflow while the stage
imports torch), right after importing torch in one that does (a forked copy of the
stage, which has torch without a second 2 s import: a tiny train_vae took 9.8 to 10.5 s
instead of 12.0 to 12.7 s). It imports MLflow and opens the store while the stage
starts. It runs at the stage's own CPU priority: at the lowest (nice 19) it took only
CPU time nothing else wanted, which on a quiet machine saved about a second of a
10-epoch train_vae (12.4 and 14.5 s against 14.1 and 14.7 s), but beside two busy
processes it got almost none, and the stage, waiting for it at its end, took over
200 s instead of 21 s. The stage waits for that process only where it must: before
writing a checkpoint (the store then holds every epoch the checkpoint holds), for the
run id, for a registered model version, and at the end. Per-epoch metrics are also
batched (one store round trip every ``FLUSH_SECONDS``, not one per epoch). The process
ends with the stage.

All calls are no-ops when tracking is off (``BVAE_TRACKING=off``) and on DDP ranks
other than 0. Waiting counts as ``tracking`` time (:mod:`pipeline.hardware.timing`); the
tracking process's own time as ``tracking_background``.
"""

import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future

from pipeline.hardware import timing
from pipeline.tracking import mlflow_calls, store
from pipeline.tracking.store import check_reachable, tracking_enabled, tracking_uri
from pipeline.tracking.worker import Worker

FLUSH_SECONDS = 10.0  # how stale the MLflow UI's live curves may be while a stage trains
INTERRUPT_WAIT = 10.0  # seconds an interrupted stage waits for its last MLflow calls


class StageRun:
    """One stage's MLflow run (a no-op when tracking is off). Making it starts the tracking
    process (an unreachable server stops the stage here, before any work); ``with run:``
    opens the run, ``with run.resuming(run_id):`` continues that run (a training stage
    resuming from a checkpoint). ``models``: the stage logs models, so the tracking process
    imports mlflow.pytorch ahead of the first, and is a copy of the stage made by fork
    (:class:`pipeline.tracking.worker.Worker`), which the stage makes after importing torch and
    before it computes anything: it then has torch without importing it again. ``before_end``: a check that runs
    when the block ends without error, before the run is marked FINISHED (an error it
    raises marks the run FAILED instead). Every logging method returns a Future of the
    call's result (None when tracking is off)."""

    def __init__(self, stage: str, params: dict, models: bool = False, before_end: Callable[[], None] | None = None):
        self.stage = stage
        self.params = params
        self.before_end = before_end
        self.resume_run_id = None
        self.enabled = tracking_enabled() and int(os.environ.get("RANK", "0")) == 0  # under DDP rank 0 logs
        self._opened: Future | None = None
        self._process: Worker | None = None
        self._pending: list[tuple] = []  # per-epoch metrics not sent yet: (key, value, timestamp ms, step)
        self._flushed = time.perf_counter()
        timing.record(stage)
        if not self.enabled:
            return
        uri = tracking_uri()
        check_reachable(uri)  # an unreachable server stops the stage now, before any work
        artifacts = store.artifact_root(uri)
        try:
            self._process = Worker(first=mlflow_calls.start, fork=models and "torch" in sys.modules)
        except (OSError, ImportError, NotImplementedError) as e:  # e.g. no working sem_open in a container
            print(
                f"warning: cannot start the MLflow tracking process ({e}); continuing without tracking, the "
                "stage's outputs are still written",
                file=sys.stderr,
            )
            self.enabled = False
            return
        self._call("connect", uri, artifacts)
        if models:
            self._call("warm_up")

    def resuming(self, run_id: str | None) -> "StageRun":
        """Continue the run ``run_id`` (None: start a new one) when the block opens."""
        self.resume_run_id = run_id
        return self

    def __enter__(self):
        self._opened = self._call("open", self.stage, self.params, self.resume_run_id)
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

    def _end(self, exc_type) -> None:
        """Send the last metrics, the stage's timing and its end status, and let the tracking
        process exit (waiting for it, unless the stage was interrupted)."""
        if self._process is None:
            return
        self.flush()
        spent = timing.CLOCK.summary()
        self.log_metrics(
            {"stage_wall_time_s": spent.pop("wall"), "overhead_share": spent.pop("overhead_share")}
            | {f"time_{k}_s": v for k, v in spent.items()}
        )
        interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)  # Ctrl-C or SIGTERM
        status = "FINISHED" if exc_type is None else "KILLED" if interrupted else "FAILED"
        try:
            self.wait(self._call("end", status), INTERRUPT_WAIT if interrupted else None)
        except TimeoutError:
            print(
                f"warning: MLflow did not answer within {INTERRUPT_WAIT:.0f} s; the run may show as running",
                file=sys.stderr,
            )
        with timing.part("tracking"):  # the tracking process exits
            self._process.shutdown(wait=not interrupted, cancel_futures=interrupted)
        self._process = None

    def _call(self, name: str, *args, **kwargs) -> Future | None:
        """Hand ``mlflow_calls.RunCalls.<name>(*args)`` to the tracking process."""
        if not self.enabled:
            return None
        future = self._process.submit(mlflow_calls.call, name, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: Future) -> None:
        """Note a failed call (tracking is then off) and the tracking process's time."""
        if future.cancelled():
            return
        if future.exception() is not None:  # the tracking process itself died
            if self.enabled:
                print(
                    f"warning: the MLflow tracking process failed ({future.exception()}); continuing without tracking",
                    file=sys.stderr,
                )
            self.enabled = False
            return
        ok, _, seconds = future.result()
        timing.CLOCK.background("tracking", seconds)
        if not ok:
            self.enabled = False

    def wait(self, future: Future | None, timeout: float | None = None):
        """The result of a tracking call (None when tracking is off or the call failed),
        counted as ``tracking`` time."""
        if future is None:
            return None
        with timing.part("tracking"):
            try:
                ok, result, _ = future.result(timeout)
            except TimeoutError:  # the caller decides what a slow store means
                raise
            except Exception:  # the tracking process died: already reported
                return None
        return result if ok else None

    @property
    def run_id(self) -> str | None:
        """This stage's run id (waits until the run is open); None when tracking is off."""
        return self.wait(self._opened)

    # -- logging (all no-ops when tracking is off) --

    def log_params(self, params: dict) -> Future | None:
        return self._call("log_params", params)

    def log_metrics(self, metrics: dict, step: int | None = None) -> Future | None:
        """Metrics under ``<stage>/`` (``train_vae/gamma``, ``train_stage2/gamma``): keys that
        mean different things in different stages never share a chart in the MLflow UI."""
        return self._call("log_metrics", {f"{self.stage}/{k}": float(v) for k, v in metrics.items()}, step)

    def log_epoch(self, metrics: dict, step: int) -> None:
        """Per-epoch metrics (under ``<stage>/``, as :meth:`log_metrics`), buffered: sent in one
        batch at most every FLUSH_SECONDS, before each checkpoint and when the stage ends (one
        store round trip instead of one an epoch)."""
        if not self.enabled:
            return
        now = int(time.time() * 1000)
        self._pending += [(f"{self.stage}/{k}", float(v), now, step) for k, v in metrics.items()]
        if time.perf_counter() - self._flushed >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> Future | None:
        """Send the buffered per-epoch metrics."""
        pending, self._pending, self._flushed = self._pending, [], time.perf_counter()
        return self._call("log_batch", pending) if pending else None

    def log_artifact(self, path, artifact_path: str | None = None) -> Future | None:
        return self._call("log_artifact", str(path), artifact_path)

    def log_grid(self, image, name: str, step: int | None = None, parent: bool = False) -> Future | None:
        """An image grid as ``grids/<name>.png`` on this stage's run (with ``step`` also in the
        ``name`` image timeline), or as ``<name>.png`` at the parent run's artifact root, where
        MLflow's Compare shows it (:meth:`RunCalls.log_grid`)."""
        return self._call("log_grid", image, name, step, parent)

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
    ):
        """Log a torch module as an MLflow model (signature from ``example``), with ``parent``
        also an output of the parent run; optionally register it (the parent as its source run),
        tagged with ``metrics``, point ``alias`` at the new version and ``champion`` if its
        ``score`` is the best (:mod:`pipeline.tracking.registry`). The Future's result says what happened."""
        return self._call("log_model", model, name, example, register_as, alias, champion, score, metrics, parent)

    def log_input(self, name: str, source: str, digest: str, parent: bool = False) -> Future | None:
        """Record the raw data as this run's (or the parent run's) training dataset input: its
        ``name``, ``source`` (where it came from) and ``digest`` (a content hash; MLflow keeps its
        first 36 characters)."""
        return self._call("log_input", name, source, digest, parent)

    def set_tags(self, tags: dict) -> Future | None:
        return self._call("set_tags", tags)

    def log_parent_params(self, params: dict) -> Future | None:
        """Params of the whole configuration (``data_dim``) on the parent run (keys as given)."""
        return self._call("log_parent_params", params)

    def log_parent_metrics(self, metrics: dict) -> Future | None:
        """Put the pipeline's headline metrics on the parent run (keys as given)."""
        return self._call("log_parent_metrics", {k: float(v) for k, v in metrics.items()})
