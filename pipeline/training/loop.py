"""The training loop shared by both stages.

Data live in memory as one tensor (uint8 images, or float latent codes) on the training
device; each epoch is a seeded permutation sliced into batches. After every optimiser step
the balancing strategy updates its running state (``Balance.step``). Per epoch it records
the batch-size-weighted means of ``loss``, ``rec``, ``kl``, ``mse``, ``gamma``,
``beta_eff`` and the loss on the common scale ``loss_common = mse + beta_eff * KL``; with
``diag_x``, the diagnostics of :mod:`pipeline.training.diagnostics` after the first epoch,
every ``diag_every`` epochs (or seconds, "Ns") and the last, in eval mode under a forked
RNG, so that their pace never changes the training numbers.
"""

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from pipeline import Diverged
from pipeline.balance import Balance
from pipeline.hardware.device import Speed
from pipeline.hardware.threads import Adaptive
from pipeline.hardware.timing import part
from pipeline.progress import progress
from pipeline.training import distributed
from pipeline.training.checkpoint import copy_tensors, rng_state, set_rng_state
from pipeline.training.diagnostics import gradient_norms, latent_statistics, latent_summary

STEP_KEYS = ("loss", "rec", "kl", "mse", "gamma", "beta_eff", "kl_common", "loss_common")


@dataclass(frozen=True)
class Settings:
    """How :func:`fit` trains: ``epochs`` of batches of ``batch_size``, Adam at ``lr`` (halved
    every ``lr_halve_every`` epochs when set), the step as ``speed`` runs it, checkpoints and
    diagnostics paced by ``checkpoint_every`` and ``diag_every`` (:class:`Pace`); ``desc``
    names the progress bar and the messages; ``adaptive``: ``threads: adaptive``'s count
    (:class:`pipeline.hardware.threads.Adaptive`), measured again between steps."""

    epochs: int
    batch_size: int
    lr: float
    desc: str = "fit"
    lr_halve_every: int | None = None
    speed: Speed = field(default_factory=Speed)
    checkpoint_every: int | str = 1
    diag_every: int | str = 1
    adaptive: Adaptive | None = None

    @classmethod
    def from_section(cls, cfg: dict, desc: str, speed: Speed, adaptive: Adaptive | None = None) -> "Settings":
        """The settings of a training section of params.yaml (``train``, ``stage2``)."""
        keys = ("epochs", "batch_size", "lr", "lr_halve_every", "checkpoint_every", "diag_every")
        return cls(desc=desc, speed=speed, adaptive=adaptive, **{k: cfg[k] for k in keys if k in cfg})


def adam(model: torch.nn.Module, balance: Balance, lr: float) -> torch.optim.Adam:
    """torch's Adam over the model's weights at ``lr`` and the strategy's own parameters (log
    gamma) at ``lr`` x ``lr_factor``; its fused update, the fastest here (docs/speed.md#the-optimiser)."""
    groups = [{"params": list(model.parameters())}]
    if own := list(balance.parameters()):
        groups.append({"params": own, "lr": lr * balance.lr_factor})
    return torch.optim.Adam(groups, lr=lr, fused=True)


class Pace:
    """When a periodic task (checkpoint, diagnostics) is due: ``every`` is an integer N
    (every N-th epoch) or a string "Ns" (the first epoch that ends N seconds or more after
    the last time it ran); always at the last epoch."""

    def __init__(self, every: int | str, last_epoch: int):
        self.epochs, self.seconds = (None, float(every.strip()[:-1])) if isinstance(every, str) else (int(every), None)
        self.last_epoch = last_epoch
        self.ran = time.perf_counter()

    def due(self, epoch: int) -> bool:
        if epoch == self.last_epoch:
            return True
        if self.epochs:
            return epoch % self.epochs == 0
        return time.perf_counter() - self.ran >= self.seconds

    def done(self) -> None:
        self.ran = time.perf_counter()


class Hooks:
    """The points where a test changes what the loop does (fault injection, holding
    mid-epoch so that a signal lands where the test wants it). The loop's own behaviour is
    this no-op default; tests install theirs in :data:`HOOKS` (tests/hooks/sitecustomize.py)."""

    def before_step(self, epoch: int, i: int, steps: int) -> None:
        """Before step ``i`` (0-based) of the ``steps`` of ``epoch``."""

    def loss(self, step: int, loss: torch.Tensor) -> torch.Tensor:
        """The loss of global step ``step`` (1-based), before its backward pass."""
        return loss

    def after_training(self, epochs: int) -> None:
        """After the last epoch's checkpoint, before the stage writes its outputs."""


HOOKS = Hooks()


def as_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> floats in [0, 1]; float data (latent codes) unchanged."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x


def optimisation_step(forward, balance: Balance, opt: torch.optim.Adam, x: torch.Tensor, speed: Speed, step: int):
    """One step on the batch ``x``: forward (bf16 autocast as ``speed`` says), the
    strategy's loss in fp32, backward, the Adam update, then the strategy's own update
    from the global batch's MSE. Returns the :class:`LossTerms`."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=speed.bf16):
        x_hat, mu, logvar = forward(x)
    terms = balance(x, x_hat.float(), mu.float(), logvar.float())
    terms.loss = HOOKS.loss(step, terms.loss)
    opt.zero_grad()
    terms.loss.backward()
    opt.step()
    terms.mse = distributed.mean(terms.mse.detach())  # the global batch's MSE drives gamma
    balance.step(terms)
    return terms


def step_values(terms, device: torch.device) -> torch.Tensor:
    """The STEP_KEYS values of a step, as float64 on ``device`` (read once per epoch)."""
    kl = terms.kl.detach()
    row = (
        terms.loss.detach(),
        terms.rec.detach(),
        kl,
        terms.mse.detach(),
        terms.gamma,
        terms.beta_eff,
        terms.beta_eff * kl,
        terms.loss_common,
    )
    return torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device) for v in row])


def run_epoch(forward, balance, opt, data, epoch, step, settings: Settings, bar) -> torch.Tensor:
    """The optimisation steps of one epoch over a seeded permutation of ``data``, this
    rank's share of each global batch; returns each step's STEP_KEYS values times its
    batch size (steps, keys), summed over the ranks."""
    batch_size, speed, adaptive = settings.batch_size, settings.speed, settings.adaptive
    rank, size = distributed.world()
    n = len(data)
    perm = torch.randperm(n).to(data.device)
    if size > 1:
        distributed.own_noise(rank)
    steps = -(-n // batch_size)
    values = torch.zeros(steps, len(STEP_KEYS), dtype=torch.float64, device=data.device)
    with part("work"):
        for i in range(steps):
            HOOKS.before_step(epoch, i, steps)
            idx = perm[i * batch_size : (i + 1) * batch_size]
            if len(idx) < size:  # a last batch too small to give every rank an item
                continue
            x = as_input(data[idx[rank::size]])  # this rank's share of the global batch
            if speed.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            terms = optimisation_step(forward, balance, opt, x, speed, step + i + 1)
            values[i] = step_values(terms, data.device)
            values[i] *= len(x)
            bar.update(len(idx))
            if adaptive is not None and (note := adaptive.tick()):
                bar.write(f"epoch {epoch}: {note}")
    return distributed.total(values).cpu()  # sums over the global batches


def images_used(n: int, batch_size: int) -> int:
    """The images an epoch's steps used: all ``n`` but a last batch too small to give every
    rank an item (skipped)."""
    _, size = distributed.world()
    return n - n % batch_size if 0 < n % batch_size < size else n


def epoch_row(values: torch.Tensor, images: int, epoch: int, step: int, desc: str) -> dict:
    """The epoch's history row: per-image means of the step values; a non-finite loss
    stops training, naming its epoch and step."""
    bad = (~values[:, 0].isfinite()).nonzero()
    if len(bad):
        first = int(bad[0])
        raise Diverged(f"{desc}: the loss became {float(values[first, 0])} at epoch {epoch}, step {step + first + 1}")
    return {"epoch": epoch, **{k: float(v) / images for k, v in zip(STEP_KEYS, values.sum(0))}}


def fit(
    model: torch.nn.Module,
    balance: Balance,
    epoch_data: Callable[[int], torch.Tensor],
    settings: Settings,
    *,
    diag_x: torch.Tensor | None = None,
    on_epoch: Callable[[dict, dict, dict | None], None] | None = None,
    resume: dict | None = None,
    on_checkpoint: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Train ``model`` with ``balance`` as ``settings`` say (:func:`adam`) and return the
    per-epoch history rows.

    ``epoch_data(epoch)`` returns the epoch's training set (N, ...) on the model's
    device. ``on_epoch(row, timing, latent)`` is called after every epoch with the
    history row, the timing (seconds, images/s: kept apart, not reproducible) and the
    per-dimension latent statistics of ``diag_x`` (None on epochs without diagnostics). The
    per-step values stay on the device and are read once per epoch, so a GPU never waits for
    the host; a non-finite loss is reported then, naming its epoch and step.

    Checkpoints: paced by ``settings.checkpoint_every`` (:class:`Pace`; always after the last
    epoch) ``on_checkpoint(state)`` receives the full training state (see
    :mod:`pipeline.training.checkpoint`); ``resume=state`` continues from one exactly (same
    numbers as a run that never stopped, on CPU). On Ctrl-C the last finished epoch's
    state is handed to ``on_checkpoint`` before the interrupt propagates.
    """
    speed, epochs, batch_size, desc = settings.speed, settings.epochs, settings.batch_size, settings.desc
    if speed.channels_last:
        model.to(memory_format=torch.channels_last)
    rank, size = distributed.world()
    forward = distributed.wrap(model)
    forward = torch.compile(forward) if speed.compile else forward
    opt = adam(model, balance, settings.lr)
    history, step, start = [], 0, 1
    if resume is not None:
        model.load_state_dict(resume["model"])
        balance.load_state_dict(resume["balance"])
        opt.load_state_dict(resume["optimizer"])  # holds the learning rate as halved so far
        history, step, start = list(resume["history"]), resume["step"], resume["epoch"] + 1
        set_rng_state(resume["rng"])

    snapshot = None  # the tensors of the last state(), refreshed in place every epoch until handed over

    def state(epoch: int) -> dict:
        """A copy of everything the next epoch needs (the RNG states and the history's rows are
        never changed in place: new objects suffice)."""
        nonlocal snapshot
        live = {"model": model.state_dict(), "balance": balance.state_dict(), "optimizer": opt.state_dict()}
        snapshot = copy_tensors(live, into=snapshot)
        return snapshot | {"rng": rng_state(), "epoch": epoch, "step": step, "history": list(history)}

    checkpoints, diagnostics = Pace(settings.checkpoint_every, epochs), Pace(settings.diag_every, epochs)
    last, saved = None, True  # the last finished epoch's state, and whether on_checkpoint has it
    bar = progress(desc=desc, unit="img", unit_scale=True, disable=rank != 0, delay=1e-6)  # drawn once it has a total
    try:
        for epoch in range(start, epochs + 1):
            model.train()
            if size > 1:
                distributed.sync_rng()
            data = epoch_data(epoch)
            if bar.total is None:
                bar.reset(total=(epochs - start + 1) * len(data))
            t0 = time.perf_counter()
            values = run_epoch(forward, balance, opt, data, epoch, step, settings, bar)
            if settings.lr_halve_every and epoch % settings.lr_halve_every == 0:
                for group in opt.param_groups:  # as torch's StepLR(step_size=lr_halve_every, gamma=0.5) once an epoch
                    group["lr"] *= 0.5
            images = images_used(len(data), batch_size)
            row = epoch_row(values, images, epoch, step, desc)
            step += len(values)
            seconds = time.perf_counter() - t0
            latent = None
            if diag_x is not None and rank == 0 and (epoch == 1 or diagnostics.due(epoch)):
                with part("diagnostics"):  # under DDP on a copy: its gradient hooks stay out of the way
                    diag_model = copy.deepcopy(model) if size > 1 else model
                    latent = latent_statistics(diag_model, diag_x)
                    row |= gradient_norms(diag_model, balance, as_input(diag_x[:batch_size])) | latent_summary(latent)
                diagnostics.done()
            timing = {"epoch_seconds": seconds, "images_per_s": images / seconds, "lr": opt.param_groups[0]["lr"]}
            timing["threads"] = torch.get_num_threads()  # the thread plan, epoch by epoch
            history.append(row)
            bar.set_postfix(epoch=epoch, loss=f"{row['loss']:.4g}", gamma=f"{row['gamma']:.3g}")
            if on_epoch is not None and rank == 0:
                on_epoch(row, timing, latent)
            if on_checkpoint is not None and rank == 0:
                with part("checkpoints"):
                    last, saved = state(epoch), False
                    if checkpoints.due(epoch):
                        on_checkpoint(last)
                        saved, snapshot = True, None  # handed over: the next state() copies into new tensors
                        checkpoints.done()
        HOOKS.after_training(epochs)
    except KeyboardInterrupt:
        if not saved:
            on_checkpoint(last)
        raise
    finally:
        bar.close()
    return history
