"""Fault hooks for the training loop (:class:`pipeline.training.loop.Hooks`), in every Python
process started with this folder on ``PYTHONPATH`` (:data:`conftest.HOOKS_PATH`), as the
environment asks:

    BVAE_TEST_NAN_STEP=S          the training loss becomes NaN at global step S
    BVAE_TEST_HOLD_AFTER_EPOCH=N  three steps into epoch N + 1 (N the last epoch: after training,
    BVAE_TEST_HOLD_FILE=F         before the outputs) write the pid to F, then wait until F is
                                  removed (go on) or a signal ends the process

A test acts on the file (an event), never on a guess of how long an epoch takes. The hooks go
in when ``pipeline.training.loop`` is first imported (an import-system finder), so a process
that never trains imports nothing more.
"""

import importlib.abc
import importlib.machinery
import os
import sys
import time
from pathlib import Path

LOOP = "pipeline.training.loop"


def install(loop) -> None:
    nan_step = int(os.environ.get("BVAE_TEST_NAN_STEP", "0"))
    hold_after = int(os.environ.get("BVAE_TEST_HOLD_AFTER_EPOCH", "0"))

    def hold() -> None:
        held = Path(os.environ["BVAE_TEST_HOLD_FILE"])
        part = held.with_name(f"{held.name}.{os.getpid()}")
        part.write_text(str(os.getpid()))
        os.replace(part, held)  # atomic: a test that sees the file reads the whole pid
        while held.exists():  # the test removes the file, or signals the process
            time.sleep(0.05)

    class FaultHooks(loop.Hooks):
        def before_step(self, epoch, i, steps):
            if hold_after and epoch == hold_after + 1 and i == min(2, steps - 1):
                hold()

        def loss(self, step, loss):
            return loss * float("nan") if step == nan_step else loss

        def after_training(self, epochs):
            if hold_after == epochs:
                hold()

    loop.HOOKS = FaultHooks()


class _InstallAfterImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != LOOP:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            install(module)

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("BVAE_TEST_NAN_STEP") or os.environ.get("BVAE_TEST_HOLD_AFTER_EPOCH"):
    sys.meta_path.insert(0, _InstallAfterImport())
