"""Will it fit? Memory estimates checked before the work, so that a value params accept
but the machine cannot hold (``train.latent_dim: 100000000``, ``prepare.image_size:
100000``) stops in a moment with one line, not after minutes with an allocation error.

The estimates are lower bounds of what the work holds at once: a model's weights, their
gradients and Adam's two moments (16 bytes a float32 parameter) and a batch's input,
output and output gradient in float32 (the layers' activations in between are not
counted), or a data set's images. They must fit in MARGIN of the memory available.
"""

import torch

from pipeline import PipelineError

MARGIN = 0.8  # share of the available memory an estimate may take
ADAM_BYTES = 16  # float32 weight, gradient and Adam's two moments, per parameter


def available(device: torch.device) -> int | None:
    """Bytes the process may still allocate on ``device``: free GPU memory, or Linux's
    MemAvailable; None where unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def check(need: float, device: torch.device, what: str, fix: str) -> None:
    """Raise one line when ``need`` bytes (``what`` says of what) exceed MARGIN of the memory available."""
    have = available(device)
    if have is not None and need > MARGIN * have:
        raise PipelineError(
            f"{what} needs about {gb(need)}, more than {MARGIN:.0%} of the {gb(have)} available on {device}: {fix}"
        )


def check_training(build, batch_size: int, item_values: int, device: torch.device, what: str, fix: str) -> None:
    """:func:`check` the training of the model ``build()`` makes (built on the meta device:
    nothing is allocated) on batches of ``batch_size`` items of ``item_values`` values:
    ADAM_BYTES a parameter, and 3 float32 copies of a batch. ``what`` names the model."""
    with torch.device("meta"):
        model = build()
    params = sum(p.numel() for p in model.parameters())
    need = ADAM_BYTES * params + 3 * 4 * batch_size * item_values
    check(need, device, f"{what} ({params:,} parameters, with gradients and Adam state) and a batch", fix)
