"""Warm stage processes: `python -m stages.<name>` runs in a process that has torch,
MLflow and this package imported already, instead of a fresh interpreter importing
them again (about 1 s of start-up per stage, plus 3 s of CPU for its MLflow process).

The first stage command that finds no warm server runs as usual and starts one in the
background (`python -m stages.warm serve`). The server imports what the stages use,
once, and listens on a Unix socket only this user can reach. A later stage command
(the client) connects and hands over its arguments, working directory, environment,
umask, start time and its stdin/stdout/stderr. The server forks a supervisor, which
forks the stage's tracking process (:mod:`pipeline.worker`) and the stage process;
the stage process runs the module as `python -m` would, writing to the client's
terminal. The client forwards Ctrl-C, SIGTERM and SIGHUP to the stage and exits with
its exit status; if the client is killed, the supervisor kills the stage at once.
Stage outputs are byte-identical to a cold run (tests/test_warm.py).

One server serves one project folder with one version of the code, of the interpreter
and its packages, and of what matters at import time (the environment's OMP_*,
PYTHON*, ... variables, interpreter flags, CPU affinity, niceness, cgroup): its key.
Anything else gets a server of its own. A server exits after ``BVAE_WARM`` seconds
without a request (default 600) or once its folder is gone. ``BVAE_WARM=off``: every
stage runs in a fresh process, as does every stage under torchrun and off Linux.

    python -m stages.warm status    # the warm servers of this user
    python -m stages.warm stop      # stop this project's (--all: every one)
"""

import hashlib
import json
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IDLE = 600.0  # seconds a server waits for the next stage
STARTING_STALE = 120.0  # a server still not listening after this long has failed
REPLY_TIMEOUT = 30.0  # seconds a client waits for the server to start its stage
ENV_AT_IMPORT = ("OMP_", "MKL_", "KMP_", "GOMP_", "OPENBLAS_", "TORCH", "PYTORCH", "CUDA", "NVIDIA", "LD_", "PYTHON",
                 "MPL", "LANG", "LC_", "TMPDIR", "HOME", "XDG_", "TZ")  # fmt: skip
# the libraries the stages import, and what a first log_model imports
LIBRARIES = ("numpy", "torch", "torchvision", "torch_fidelity", "sklearn.mixture", "PIL.Image", "yaml", "tqdm",
             "mlflow", "mlflow.pytorch", "mlflow.models", "mlflow.entities", "mlflow.data.meta_dataset",
             "mlflow.data.sources", "mlflow.store.tracking.sqlalchemy_store",
             "mlflow.store.model_registry.sqlalchemy_store", "mlflow.pyfunc", "mlflow.pyfunc.scoring_server",
             "mlflow.models.display_utils", "mlflow.types.responses")  # fmt: skip
IN_SERVER = False  # True in a stage process the server forked: it runs the stage itself


def idle_seconds() -> float | None:
    """``BVAE_WARM``: seconds a server idles before it exits; None when off."""
    value = os.environ.get("BVAE_WARM", "").strip().lower() or str(DEFAULT_IDLE)
    if value in ("off", "0", "false", "no"):
        return None
    try:
        return float(value)
    except ValueError:
        click.echo(f"warning: BVAE_WARM={value!r} is neither seconds nor 'off'; running this stage cold", err=True)
        return None


def folder() -> Path | None:
    """This user's private folder of sockets (None where it is not private)."""
    path = Path(tempfile.gettempdir()) / f"bvae-warm-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.stat()
    except OSError:
        return None
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        click.echo(f"warning: {path} is not private to this user; stages run without the warm server", err=True)
        return None
    return path


def key() -> str:
    """What a server's imports depend on: the code, the interpreter and its packages, and
    the environment at import time (see the module docstring)."""
    h = hashlib.sha256()
    for path in sorted([*(ROOT / "pipeline").rglob("*.py"), *(ROOT / "stages").rglob("*.py")]):
        h.update(f"{path.relative_to(ROOT)}\0".encode() + path.read_bytes())
    site = [p for p in sys.path if p.endswith("-packages") and os.path.isdir(p)]
    try:
        cgroup = Path("/proc/self/cgroup").read_text()
    except OSError:
        cgroup = ""
    facts = [str(ROOT), sys.executable, sys.version, repr(sys.flags), sys.warnoptions, sys._xoptions,
             [(p, os.stat(p).st_mtime_ns) for p in site], sorted(os.sched_getaffinity(0)),
             os.getpriority(os.PRIO_PROCESS, 0), cgroup,
             sorted((k, v) for k, v in os.environ.items() if k.startswith(ENV_AT_IMPORT))]  # fmt: skip
    h.update(json.dumps(facts, default=str).encode())
    return h.hexdigest()[:24]


# -- the client: a stage command ------------------------------------------------------------


def handoff() -> int | None:
    """Run this stage command in a warm server: returns its exit code (a stage killed by a
    signal kills this process the same way), or None to run it here, in which case a
    server is started in the background for the next stage."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if (IN_SERVER or spec is None or not spec.name.startswith("stages.") or not hasattr(os, "pidfd_open")
            or any(k in os.environ for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))):  # fmt: skip
        return None
    idle, where = idle_seconds(), folder()
    if idle is None or where is None:
        return None
    k = key()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(where / f"{k}.sock"))
    except OSError:  # none yet, or one that has gone
        sock.close()
        _start_server(where, k, idle)
        return None
    with sock:
        return _run_there(sock, spec.name)


def _run_there(sock: socket.socket, module: str) -> int | None:
    from pipeline.timing import process_start

    fds = [fd for fd in (0, 1, 2) if _is_open(fd)]
    umask = os.umask(0)
    os.umask(umask)
    request = {"module": module, "argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ), "umask": umask,
               "started": process_start(), "fds": fds}  # fmt: skip
    payload = json.dumps(request).encode()
    sock.settimeout(REPLY_TIMEOUT)
    replies = sock.makefile("rb")
    try:
        socket.send_fds(sock, [len(payload).to_bytes(8, "big")], fds)
        sock.sendall(payload)
        started = json.loads(replies.readline() or b"{}")
    except (OSError, ValueError):  # the server went away, or did not answer in time
        started = {}
    if "pid" not in started:
        reason = started.get("error", "no answer")
        click.echo(f"warning: the warm server could not start this stage ({reason}); running it here", err=True)
        return None
    sock.settimeout(None)
    pid = started["pid"]
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, _frame: _kill(pid, s))
    line = replies.readline()
    if not line:
        click.echo("error: the warm stage process vanished without an exit status", err=True)
        return 1
    code = os.waitstatus_to_exitcode(json.loads(line)["status"])
    if code < 0:  # killed by a signal: end the same way, as DVC and shells expect
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _start_server(where: Path, k: str, idle: float) -> None:
    """Start a server for key ``k`` in the background, unless one is starting already."""
    import subprocess

    starting = where / f"{k}.starting"
    try:
        if time.time() - starting.stat().st_mtime < STARTING_STALE:
            return
        starting.unlink()
    except FileNotFoundError:
        pass
    try:
        os.close(os.open(starting, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:  # another stage command got there first
        return
    argv = sys.orig_argv
    flags = argv[1 : argv.index("-m")] if "-m" in argv else []  # the interpreter options of this command
    with open(where / f"{k}.log", "ab") as log:
        subprocess.Popen([sys.executable, *flags, "-m", "stages.warm", "serve", k, "--idle", str(idle)], cwd=ROOT,
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)  # fmt: skip


# -- the server ---------------------------------------------------------------------------


def _preload() -> None:
    """Import the libraries and every module of this package (one that fails to import is
    left for the stage to report)."""
    import importlib
    import pkgutil

    import pipeline
    import stages

    ours = [f"{pkg.__name__}.{m.name}" for pkg in (pipeline, stages) for m in pkgutil.iter_modules(pkg.__path__)]
    for name in [*LIBRARIES, *ours]:
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001
            print(f"not preloaded: {name} ({type(e).__name__}: {e})", flush=True)
    import io

    import matplotlib.pyplot as plt
    from sqlalchemy.orm import configure_mappers

    configure_mappers()  # MLflow's tables: set up once here, not in every tracking process (0.3 s)
    _warm_mlflow()
    fig = plt.figure(figsize=(1, 1))
    fig.text(0.5, 0.5, "warm")
    fig.savefig(io.BytesIO(), format="png")  # matplotlib's fonts: loaded once here, not in every figure stage (0.1 s)
    plt.close(fig)


def _warm_mlflow() -> None:
    """Fill two per-process caches of MLflow (pinned in requirements.lock) once, here: the
    store schema's head revision (alembic reads 67 migration scripts: 0.26 s each time a
    sqlite store opens) and the module-to-package map behind a logged model's requirements
    (0.2 s at the first log_model). Both depend only on the installed packages, which are
    part of the server's key. Skipped where a release has renamed them."""
    import functools

    from mlflow.store.db import utils as db_utils
    from mlflow.utils import requirements_utils

    if callable(head := getattr(db_utils, "_get_latest_schema_revision", None)):
        db_utils._get_latest_schema_revision = functools.cache(head)
        db_utils._get_latest_schema_revision()
    if callable(fill := getattr(requirements_utils, "_init_modules_to_packages_map", None)):
        fill()


def serve(k: str, idle: float) -> None:
    """Listen for stage commands until ``idle`` seconds pass without one or the project is gone."""
    import select

    where = folder()
    path, starting, info = where / f"{k}.sock", where / f"{k}.starting", where / f"{k}.json"
    try:
        _preload()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        tmp = where / f"{k}.{os.getpid()}"
        listener.bind(str(tmp))
        listener.listen(16)
        os.replace(tmp, path)  # appears ready to listen, never half set up
        inode = path.stat().st_ino
        tmp.write_text(json.dumps({"pid": os.getpid(), "root": str(ROOT), "started": time.time()}))
        os.replace(tmp, info)  # the event `python -m stages.warm start` waits for
    finally:
        starting.unlink(missing_ok=True)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"serving {ROOT} on {path} (pid {os.getpid()})", flush=True)
    last = time.monotonic()
    try:
        while True:
            if select.select([listener], [], [], min(5.0, idle))[0]:
                conn, _ = listener.accept()
                last = time.monotonic()
                if os.fork() == 0:
                    listener.close()
                    _supervise(conn)
                conn.close()
            elif time.monotonic() - last >= idle or not ROOT.is_dir() or not _same_inode(path, inode):
                break
    finally:
        if _same_inode(path, inode):
            for own in (path, info, where / f"{k}.log"):  # the log is kept only where a server failed
                own.unlink(missing_ok=True)


def _same_inode(path: Path, inode: int) -> bool:
    try:
        return path.stat().st_ino == inode
    except OSError:
        return False


def _supervise(conn: socket.socket) -> None:
    """The supervisor of one stage command (never returns): fork its tracking process and
    its stage process, report the stage's pid and exit status, kill it if the client dies."""
    import select
    from multiprocessing import Pipe

    from pipeline import worker

    children = []
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        header, fds, _, _ = socket.recv_fds(conn, 8, 3)
        request = json.loads(_read_exactly(conn, int.from_bytes(header, "big")))
        if select.select([conn], [], [], 0)[0] and not conn.recv(1, socket.MSG_PEEK):
            return  # the client gave up waiting (it runs the stage itself) or was killed
        os.close(os.pidfd_open(os.getpid()))  # Linux 5.3 and later, checked before any fork
        stage_end, tracker_end = Pipe()
        if (tracker := os.fork()) == 0:
            conn.close()
            stage_end.close()
            _child(_run_tracker, request, fds, tracker_end)
        children.append(tracker)
        if (stage := os.fork()) == 0:
            conn.close()
            tracker_end.close()
            worker.HANDED = stage_end
            _child(_run_stage, request, fds)
        children.append(stage)
        done = os.pidfd_open(stage)
        stage_end.close()
        tracker_end.close()
        for fd in fds:
            os.close(fd)
        conn.sendall(json.dumps({"pid": stage}).encode() + b"\n")
        while done not in select.select([conn, done], [], [])[0]:
            if not conn.recv(1):  # the client was killed: so is its stage
                raise ConnectionError("client gone")
        status = os.waitpid(stage, 0)[1]
        children.remove(stage)
        try:
            conn.sendall(json.dumps({"status": status}).encode() + b"\n")
        except OSError:
            pass
        os.waitpid(tracker, 0)
        children.remove(tracker)
    except BaseException as e:  # noqa: BLE001 - no stage runs on unsupervised: the client runs it, or is gone
        for pid in children:
            _kill(pid, signal.SIGKILL)
        if len(children) < 2:
            try:
                conn.sendall(json.dumps({"error": f"{type(e).__name__}: {e}"}).encode() + b"\n")
            except OSError:
                pass
    finally:
        os._exit(0)


def _child(body, *args) -> None:
    """End a forked child with ``body(*args)``'s exit code: 1 and a traceback if it raises, never 0 by mistake."""
    import traceback

    try:
        code = body(*args)
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        code = 1
    os._exit(code)


def _run_tracker(request: dict, fds: list[int], conn) -> int:
    """The stage's tracking process: the MLflow calls the stage sends over ``conn``."""
    from pipeline import mlflow_calls, worker

    _become(request, fds, "bvae tracking")
    mlflow_calls.open_store()  # while the stage starts
    worker.serve(conn)
    return 0


def _read_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the client closed the connection mid-request")
        data += chunk
    return data


def _become(request: dict, fds: list[int], title: str) -> None:
    """Turn this fork of the server into the client's process: its stdin/stdout/stderr,
    directory, environment, umask and default signal handling."""
    import io

    for fd, target in zip(fds, request["fds"]):
        os.dup2(fd, target)
        os.close(fd)
    for target in {0, 1, 2} - set(request["fds"]):
        os.dup2(os.open(os.devnull, os.O_RDWR), target)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.umask(request["umask"])
    tempfile.tempdir = None
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    unbuffered = bool(request["env"].get("PYTHONUNBUFFERED")) or sys.flags.unbuffered
    encoding, errors = sys.stdout.encoding, sys.stdout.errors
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding, errors)
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding, errors,
                                  line_buffering=os.isatty(1), write_through=unbuffered)  # fmt: skip
    sys.stderr = io.TextIOWrapper(io.BufferedWriter(io.FileIO(2, "w", closefd=False)), encoding, "backslashreplace",
                                  line_buffering=True, write_through=unbuffered)  # fmt: skip
    try:
        Path("/proc/self/comm").write_text(title[:15])  # what `top` and `ps -o comm` show
    except OSError:
        pass


def _run_stage(request: dict, fds: list[int]) -> int:
    """The stage process: run the stage module as `python -m` would; returns the exit code."""
    import atexit
    import runpy
    import traceback

    from pipeline import timing

    global IN_SERVER
    IN_SERVER = True
    _become(request, fds, f"bvae {request['module'].rsplit('.', 1)[-1]}")
    timing.CLOCK.handed_over(request["started"])
    sys.argv = [request["module"], *request["argv"]]
    sys.modules.pop(request["module"], None)  # as in a fresh `python -m`: the module runs as __main__ only
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        if not isinstance(e.code, int | None):
            print(e.code, file=sys.stderr)
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 130
    except BaseException:  # noqa: BLE001 - as the interpreter: a traceback and exit status 1
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            pass
    return code


# -- the command ----------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Warm stage processes: stages run in a server that has torch and MLflow imported
    (see the module docstring of stages/warm.py; BVAE_WARM=off turns it off)."""


@main.command("serve")
@click.argument("k", metavar="KEY")
@click.option("--idle", type=float, default=DEFAULT_IDLE, show_default=True, help="Seconds to wait for a request.")
def serve_command(k, idle):
    """Run a server for KEY (stage commands start it; not for direct use)."""
    serve(k, idle)


@main.command()
def start():
    """Start this project's warm server now, unless one is up, and wait until it listens
    (stage commands start it by themselves; this is for a sweep that should start warm)."""
    idle, where = idle_seconds(), folder()
    if idle is None or where is None or not hasattr(os, "pidfd_open"):
        raise SystemExit("error: warm servers are off here (BVAE_WARM=off, no private temp folder, or not Linux)")
    k = key()
    info, starting = where / f"{k}.json", where / f"{k}.starting"

    def listening() -> int | None:  # the event: a server writes its pid to `info` once it listens
        try:
            pid = json.loads(info.read_text())["pid"]
        except (OSError, ValueError, KeyError):
            return None
        return pid if _alive(pid) else None

    if listening() is None:
        _start_server(where, k, idle)
    deadline = time.monotonic() + STARTING_STALE
    while (pid := listening()) is None:
        if (not starting.exists() and listening() is None) or time.monotonic() > deadline:
            raise SystemExit(f"error: the warm server did not start; see {where / f'{k}.log'}")
        time.sleep(0.1)
    click.echo(f"warm server {pid} ready for {ROOT}")


@main.command()
def status():
    """List this user's warm servers: pid, project folder, age."""
    where = folder()
    infos = sorted(where.glob("*.json")) if where else []
    for info in infos:
        data = json.loads(info.read_text())
        gone = "" if _alive(data["pid"]) else "  (gone)"
        click.echo(f"{data['pid']:>8}  {data['root']}  up {time.time() - data['started']:.0f} s{gone}")
    if not infos:
        click.echo("no warm servers")


@main.command()
@click.option("--all", "every", is_flag=True, help="Stop the servers of every project, not only this one.")
def stop(every):
    """Stop this project's warm servers (the next stage starts cold and starts a new one)."""
    where = folder()
    for info in sorted(where.glob("*.json")) if where else []:
        data = json.loads(info.read_text())
        if every or data["root"] == str(ROOT):
            _kill(data["pid"], signal.SIGTERM)
            click.echo(f"stopped {data['pid']} ({data['root']})")


if __name__ == "__main__":  # run the imported module's commands: the server must set *its* IN_SERVER
    from stages import warm

    warm.main()
