"""One click command per DVC stage: read its params section, call pipeline/, write its outs.

Imported before any stage imports numpy or torch, it pins the BLAS that numpy and scipy
load (OpenBLAS: the Gaussian mixture, FID's matrix square root, KID) to its Haswell
kernels on one thread, on any x86-64 CPU with AVX2, Intel or AMD: left to choose, it
takes the kernels of the CPU it finds (SkylakeX, Zen, ...), and their results differ in
the last bits. These computations are too small to gain from more. A variable the user
set is kept.

It also makes sure the stage runs in the project's environment: a ``dvc`` started without
activating it (``.venv/bin/dvc repro``) runs ``python -m stages.X`` with whatever ``python``
comes first on PATH, which may lack torch. Then the stage re-runs itself, the same process,
with the project's ``.venv/bin/python``, or stops with one line saying to activate it.
"""

import importlib.util
import os
import platform
import sys
from pathlib import Path

VENV_PYTHON = Path(__file__).absolute().parents[1] / ".venv" / "bin" / "python"


def _in_environment() -> None:
    if importlib.util.find_spec("torch") is not None:
        return
    if VENV_PYTHON.is_file() and Path(sys.executable).absolute() != VENV_PYTHON:
        os.execv(VENV_PYTHON, [str(VENV_PYTHON), *sys.orig_argv[1:]])
    sys.stderr.write(
        f"error: {sys.executable} has no torch: this stage runs in the project's environment; activate it "
        "(`source .venv/bin/activate`, made by `bash scripts/setup.sh`) and run the same command again\n"
    )
    sys.exit(2)


def _pin_openblas() -> None:
    if platform.machine() not in ("x86_64", "AMD64"):
        return
    try:
        with open("/proc/cpuinfo") as f:
            avx2 = any(line.startswith("flags") and " avx2 " in f" {line} " for line in f)
    except OSError:
        return
    if avx2:
        os.environ.setdefault("OPENBLAS_CORETYPE", "Haswell")
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


_in_environment()
_pin_openblas()
