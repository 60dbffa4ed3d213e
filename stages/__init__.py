"""One click command per DVC stage: read its params section, call pipeline/, write its outs.

Imported before any stage imports numpy or torch, it pins the BLAS that numpy and scipy
load (OpenBLAS: the Gaussian mixture, FID's matrix square root, KID) to its Haswell
kernels on one thread, on any x86-64 CPU with AVX2, Intel or AMD: left to choose, it
takes the kernels of the CPU it finds (SkylakeX, Zen, ...), and their results differ in
the last bits. These computations are too small to gain from more. A variable the user
set is kept.
"""

import os
import platform


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


_pin_openblas()
