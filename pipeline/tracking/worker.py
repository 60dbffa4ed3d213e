"""A helper process that runs calls in the order they were made and answers each.

The stage side (:class:`Worker`) pickles each call at once (a snapshot of its
arguments), hands it to a sender thread, and gets a Future that a reader thread
resolves with the answer; so the stage never waits for the helper unless it asks for
a result. The helper runs :func:`serve` in a fresh interpreter started with
multiprocessing's ``spawn``, or, with ``fork=True``, in a copy of the calling process
made by ``fork``: it then has whatever the caller imported (torch: 2 s less for a
helper that needs it). A copy is made only while the caller runs no other thread (a
lock held by another thread would stay locked in the copy forever), and the caller
must not have run a torch computation yet (OpenMP's thread pool does not survive a
fork); otherwise the helper is spawned.
"""

import atexit
import itertools
import multiprocessing
import pickle
import queue
import sys
import threading
from concurrent.futures import Future
from multiprocessing.connection import Connection


class WorkerDied(RuntimeError):
    """The helper process ended before it answered."""


def serve(conn: Connection) -> None:
    """The helper's loop: ``(id, fn, args, kwargs)`` in, ``(id, ok, result or exception)``
    out, in order, until ``None`` or the stage's end of the pipe closes."""
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        ident, fn, args, kwargs = message
        try:
            answer = (ident, True, fn(*args, **kwargs))
        except Exception as e:  # noqa: BLE001 - handed back to the caller's Future
            answer = (ident, False, e)
        try:
            conn.send(answer)
        except OSError:
            return
        except Exception as e:  # noqa: BLE001 - an answer that does not pickle
            conn.send((ident, False, WorkerDied(f"cannot send the answer back: {type(e).__name__}: {e}")))


def _serve_forked(conn: Connection, callers_end: Connection) -> None:
    """:func:`serve` in a forked helper, which first closes its copy of the caller's end of the
    pipe: holding it, it would never see the caller's end close when the caller dies."""
    callers_end.close()
    serve(conn)


class Worker:
    """Calls run in a helper process (see the module docstring). ``first``: a call the
    helper runs before any other (e.g. lowering its priority). ``fork``: copy this process
    instead of starting a fresh interpreter, where that is safe."""

    def __init__(self, first=None, fork: bool = False):
        fork = fork and "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1
        ctx = multiprocessing.get_context("fork" if fork else "spawn")
        self._conn, theirs = ctx.Pipe()
        if fork:
            sys.stdout.flush()  # or the copy could write what this process had not written yet
            sys.stderr.flush()
        target, args = (_serve_forked, (theirs, self._conn)) if fork else (serve, (theirs,))
        self._process = ctx.Process(target=target, args=args, daemon=True, name="tracking")
        self._process.start()
        theirs.close()
        self._ids = itertools.count()
        self._futures: dict[int, Future] = {}
        self._ended = False  # the helper has gone: no call can be answered any more
        self._closing = False  # told to stop (shutdown)
        self._lock = threading.Lock()
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._sender = threading.Thread(target=self._send_all, daemon=True, name="worker-send")
        self._reader = threading.Thread(target=self._read_all, daemon=True, name="worker-read")
        self._sender.start()
        self._reader.start()
        atexit.register(self._at_exit)
        if first is not None:
            self.submit(first)

    def submit(self, fn, *args, **kwargs) -> Future:
        """Run ``fn(*args, **kwargs)`` in the helper after every earlier call."""
        future, ident = Future(), next(self._ids)
        with self._lock:
            if not self._ended:
                self._futures[ident] = future
                self._outbox.put(pickle.dumps((ident, fn, args, kwargs)))
                return future
        future.set_exception(WorkerDied("the helper process has ended"))
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Tell the helper to stop after the calls it has; ``wait``: until it has; ``cancel_futures``:
        cancel the Futures of calls not answered yet (the helper is then not waited for)."""
        self._closing = True
        self._outbox.put(None)
        if cancel_futures:
            with self._lock:
                futures, self._futures = list(self._futures.values()), {}
            for future in futures:
                future.cancel()
        if wait:
            self._reader.join()
            self._process.join()

    def _at_exit(self) -> None:
        """The stage exits without :meth:`shutdown` (it failed before its run opened): the
        calls not sent yet are dropped and the helper stops after the one it is making, so
        that multiprocessing's own exit handler, which waits for it, returns soon."""
        if self._closing or self._ended:
            return
        while True:
            try:
                self._outbox.get_nowait()
            except queue.Empty:
                break
        self.shutdown(wait=False, cancel_futures=True)

    def _send_all(self) -> None:
        while (data := self._outbox.get()) is not None:
            try:
                self._conn.send_bytes(data)
            except OSError:
                return
        try:
            self._conn.send(None)
        except OSError:
            pass

    def _read_all(self) -> None:
        try:
            while True:
                ident, ok, value = self._conn.recv()
                with self._lock:
                    future = self._futures.pop(ident, None)
                if future is None or not future.set_running_or_notify_cancel():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        except (EOFError, OSError):
            pass
        finally:
            with self._lock:
                futures, self._futures, self._ended = list(self._futures.values()), {}, True
            for future in futures:
                if future.set_running_or_notify_cancel():
                    future.set_exception(WorkerDied("the helper process ended before it answered"))
            self._conn.close()
