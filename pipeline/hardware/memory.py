"""Will it fit? The memory a process may use, for the estimates :mod:`pipeline.hardware.sizes`
checks before the work, so that a value params accept but the machine cannot hold stops in
a moment with one line, not after minutes with an allocation error. The estimates must fit
in MARGIN of the memory available.
"""

from pathlib import Path

import torch

MARGIN = 0.8  # share of the available memory an estimate may take
ADAM_BYTES = 16  # float32 weight, gradient and Adam's two moments, per parameter


def available(device: torch.device) -> int | None:
    """Bytes the process may still allocate on ``device``: free GPU memory, or the smaller of
    Linux's MemAvailable and what its cgroup's limit leaves (a container's memory.max less
    memory.current); None where unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        free = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return free
    return free if limit == "max" else min(free, int(limit) - used)


def gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"
