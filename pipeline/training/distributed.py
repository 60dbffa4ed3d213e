"""Data-parallel training with PyTorch DDP, launched by ``torchrun``.

Every rank holds the whole uint8 dataset in memory and draws the same seeded permutation;
each global batch of ``batch_size`` items is split across the N ranks (rank r takes items
r, r + N, ...), DDP averages the gradients, and the running-gamma estimate is updated with
the batch MSE averaged over the ranks. So N processes train like one process with the
same global batch (up to BatchNorm, whose statistics are per rank on CPU; on CUDA the
model uses SyncBatchNorm, and up to the noise draws). Each epoch starts from rank 0's RNG
state, so all ranks draw the same epoch data and permutation, then each switches to its
own noise stream; a checkpoint (rank 0's state) therefore resumes exactly. Only rank 0
logs, writes outputs and checkpoints.

``BVAE_NPROC=N`` makes a training stage re-launch itself as
``torchrun --standalone --nproc_per_node N -m stages.<stage>`` (:func:`stages.command.launch`,
before torch is imported); for several nodes, run ``torchrun --nnodes ...`` yourself
(docs/scaling.md). The backend is ``nccl`` on CUDA and
``gloo`` on CPU.
"""

import atexit
import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, number of processes); (0, 1) when not distributed."""
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def is_main() -> bool:
    return world()[0] == 0


def init(device: torch.device) -> torch.device:
    """Join the process group torchrun set up (no-op otherwise); returns this rank's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    atexit.register(dist.destroy_process_group)
    return device


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model DDP trains (the model itself when not distributed)."""
    if not dist.is_initialized():
        return model
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters()).device
    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[device])
    return DistributedDataParallel(model)


def sync_rng() -> None:
    """Give every rank rank 0's CPU RNG state, so they draw the same epoch data and permutation."""
    state = torch.get_rng_state()
    if dist.get_backend() == "nccl":
        moved = state.cuda()
        dist.broadcast(moved, 0)
        state = moved.cpu()
    else:
        dist.broadcast(state, 0)
    torch.set_rng_state(state)


def own_noise(rank: int) -> None:
    """After the shared draws: a distinct, reproducible noise stream per rank (for z = mu + sigma * eps)."""
    torch.manual_seed(int(torch.randint(2**62, ())) + rank)


def total(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (in place)."""
    if dist.is_initialized():
        dist.all_reduce(t)
    return t


def mean(t: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (a new tensor)."""
    return total(t.clone()) / world()[1] if dist.is_initialized() else t
