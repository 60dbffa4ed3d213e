"""CPU threads: how many a stage's work takes.

A process's share of the CPUs it may use (its affinity mask and cgroup quota, not the
host's core count, divided between the DVC queue workers running); training uses fewer
when a step is too small to split (:func:`training_threads`), and a stage's work no more
than the CPUs other processes leave free, measured when it starts and every few seconds
of its steps (:class:`Threads`, :mod:`pipeline.hardware.cpu_load`); ``BVAE_THREADS``
pins the count.
"""

import math
import os
import time
from pathlib import Path

import torch

from pipeline.hardware.cpu_load import Load, available_cpus


def queue_workers(proc: Path = Path("/proc")) -> int:
    """DVC experiment-queue workers running on this machine (``dvc queue start -j N`` starts
    N processes ``dvc exp queue-worker ...``); 0 where /proc cannot tell."""
    n = 0
    for cmdline in proc.glob("[0-9]*/cmdline"):
        try:
            n += b"\0exp\0queue-worker\0" in cmdline.read_bytes()
        except OSError:  # the process ended meanwhile
            pass
    return n


def cpu_share() -> int:
    """This process's share of the CPUs: ``BVAE_THREADS`` when set, else the usable CPUs
    divided between the DVC queue workers of this machine."""
    if os.environ.get("BVAE_THREADS"):
        return max(1, int(os.environ["BVAE_THREADS"]))
    return max(1, available_cpus() // max(1, queue_workers()))


_load: Load | None = None  # the window the first thread count of a stage's work is measured over


def set_cpu_threads() -> None:
    """One intra-op thread per CPU of this process's share (:func:`cpu_share`); and a new
    window for :class:`Threads` to measure the other processes' load over."""
    global _load
    _load = None if os.environ.get("BVAE_THREADS") else Load()
    torch.set_num_threads(cpu_share())


class Threads:
    """The intra-op threads of a stage's CPU work: ``cap`` (its share of the CPUs, or for
    training steps :func:`training_threads`), but no more than the CPUs that other
    processes leave free, rounded, at least 1 (:mod:`pipeline.cpu_load`).

    Measured first over the window since :func:`set_cpu_threads` (at least
    ``FIRST_WINDOW`` s: the stage loads its data meanwhile), then every ``WINDOW`` s of
    work at :meth:`tick` (a clock read otherwise); the count changes when the free CPUs
    differ from it by more than ``MARGIN``, so that a load near a half CPU does not make
    it flap. Counts are set with ``torch.set_num_threads``. ``BVAE_THREADS`` pins the
    count: nothing is measured. Results computed with another count agree only to
    rounding (docs/reproducibility.md)."""

    FIRST_WINDOW, WINDOW, MARGIN = 0.2, 2.0, 0.6

    def __init__(self, cap: int):
        self.cap, self.count, self.others = cap, cap, None
        self.load = _load
        if self.load is not None:
            time.sleep(max(0.0, self.FIRST_WINDOW - self.load.since()))
            self._measure(margin=0.0)
        torch.set_num_threads(self.count)

    def _measure(self, margin: float) -> bool:
        others = self.load.others()
        if others is None:
            return False
        self.others, free = others, self.load.cpus - others
        if abs(free - self.count) <= margin:
            return False
        count = max(1, min(self.cap, round(free)))
        changed, self.count = count != self.count, count
        return changed

    def tick(self) -> str | None:
        """Measure again when a window has passed; a line saying so when the count changes."""
        if self.load is None or self.load.since() < self.WINDOW:
            return None
        before = self.count
        if not self._measure(self.MARGIN):
            return None
        torch.set_num_threads(self.count)
        return f"{self.describe()}, was {before}"

    def describe(self) -> str:
        text = f"{self.count} thread{'s' if self.count > 1 else ''}"
        if self.others is not None and self.others >= 0.05:
            text += f" (other processes keep {self.others:.1f} of {self.load.cpus:g} CPUs busy)"
        return text


MIN_FLOPS_PER_THREAD = 50e6  # per thread and step; 2 threads pass 1.3x near 100 MFLOP a step (bench/threads.py)


def _layer_flops(layer: torch.nn.Module, x: torch.Tensor, out: torch.Tensor) -> int:
    """FLOPs of one forward call of a dense or convolution layer: 2 per multiply-add."""
    if isinstance(layer, torch.nn.Linear):
        return 2 * out.numel() * layer.in_features
    if isinstance(layer, torch.nn.Conv2d):
        return 2 * out.numel() * layer.in_channels // layer.groups * math.prod(layer.kernel_size)
    if isinstance(layer, torch.nn.ConvTranspose2d):
        return 2 * x.numel() * layer.out_channels // layer.groups * math.prod(layer.kernel_size)
    return 0


def step_flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    """FLOPs of one training step on the batch ``x``: its forward pass's dense and
    convolution layers (what torch's FlopCounterMode counts, a test checks; that mode
    itself imports the compiler, 0.9 s), times 3 (a backward pass costs about twice its
    forward). Layers wrapped in a module that calls them by hand (``.layer``, e.g. the
    spectral norm) are counted at the wrapper, without its power iteration (a few
    matrix-vector products a forward). The model's state and the RNG are left
    as they were."""
    total = 0

    def count(module, inputs, out):
        nonlocal total
        total += _layer_flops(getattr(module, "layer", module), inputs[0], out)

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            model(x.float().div(255) if x.dtype == torch.uint8 else x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return 3.0 * total


def training_threads(flops: float) -> int:
    """Intra-op threads for training steps of ``flops`` each: the CPU share, but no more
    threads than give each one MIN_FLOPS_PER_THREAD of every step (below that, threads
    cost more in synchronisation than they gain, and lose badly when the CPUs are shared).
    ``BVAE_THREADS`` overrides."""
    if os.environ.get("BVAE_THREADS"):
        return cpu_share()
    return max(1, min(cpu_share(), int(flops // MIN_FLOPS_PER_THREAD)))
