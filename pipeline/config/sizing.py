"""What ``auto`` chooses from the data: the stage-1 latent size (``train.latent_dim``) from the
images' size, and each training stage's epochs (``train.epochs``, ``stage2.epochs``) from the
number of training images, for a budget in optimisation steps (:func:`epochs`).

The latent size:

The rule: with D = channels x side^2 values per image,

    latent_dim = the power of two nearest D / 12, at least 8 and at most 64

which gives the latent size each was run with where it is known to work:

    digits 1x8x8       D =    64 ->  8  (this project's default, tuned on them)
    MNIST 1x28x28      D =   784 -> 64  (both references, for each of these data sets:
    CIFAR-10 3x32x32   D =  3072 -> 64   BalancingVAE computed_gamma.py:760 "latent_dim": 64,
    CelebA 3x64x64     D = 12288 -> 64   TwoStageVAE demo.py:150 --latent-dim default 64)

and in between grows with D (16x16 grey: 16, 32x32 grey: 64), so a folder of your own
32 px colour images gets the references' 64, not the digits' 8. The
networks' widths stay as ``train.model`` sets them. A latent below a quarter of the rule's size
is flagged at the end of train_vae (:func:`too_small`): such a model cannot keep the detail
of its data, which a user then tries to bring back by scaling the KL down.
"""

import math

AUTO = "auto"
LO, HI = 8, 64
VALUES_PER_UNIT = 12  # D / 12: digits 64 -> 5.3 (-> 8), MNIST 784 -> 65.3 (-> 64)


def rule(channels: int, side: int) -> int:
    """The latent size the rule gives for images of ``channels`` x ``side`` x ``side``."""
    d = channels * side * side
    return min(HI, max(LO, 2 ** round(math.log2(d / VALUES_PER_UNIT))))


def latent_dim(value, channels: int, side: int) -> tuple[int, str]:
    """``train.latent_dim`` resolved for this data, and the line train_vae prints at its start."""
    d, chosen = channels * side * side, rule(channels, side)
    shape = f"{channels}x{side}x{side}"
    if value == AUTO:
        return chosen, (
            f"latent_dim {chosen} (auto: the power of two nearest D / {VALUES_PER_UNIT} in [{LO}, {HI}] for "
            f"{shape} images, D = {d:,}; set train.latent_dim to a number to override)"
        )
    return value, f"latent_dim {value} (train.latent_dim; the size rule would give {chosen} for {shape} images)"


def too_small(value: int, channels: int, side: int) -> str | None:
    """One line when ``value`` is below a quarter of the rule's size for this data, else None
    (MNIST at 16, a quarter of 64, passes; 32 px colour at 8 does not)."""
    chosen = rule(channels, side)
    if value * 4 >= chosen:
        return None
    return (
        f"latent_dim {value} is small for {channels}x{side}x{side} images (D = {channels * side * side:,}): the "
        f"size rule gives {chosen}; reconstructions lose detail that no KL weight brings back. Set "
        f"train.latent_dim: auto (or {chosen})"
    )


# The step budgets of ``epochs: auto``: 160 and 2,000 epochs of the 1,293 training digits, which
# beat 40 and 400 (the earlier defaults) there (docs/budget.md has the measurements)
STEPS = {"train": 3_360, "stage2": 22_000}


def epochs(value, key: str, num: int, batch_size: int) -> tuple[int, str]:
    """``<key>.epochs`` (``key``: train or stage2) resolved for ``num`` training images (stage 2:
    their codes) in batches of ``batch_size``, and the line the stage prints at its start.

    ``auto``: the whole epochs nearest the budget of :data:`STEPS` optimisation steps (at least
    one), so that a small data set gets more epochs and a large one fewer, for the same number
    of Adam steps: steps an epoch = ceil(num / batch_size)."""
    per_epoch = math.ceil(num / batch_size)
    if value == AUTO:
        n = max(1, round(STEPS[key] / per_epoch))
        return n, (
            f"epochs {n:,} (auto: the budget of {STEPS[key]:,} optimisation steps at {per_epoch:,} an epoch, "
            f"{num:,} training images in batches of {batch_size}; set {key}.epochs to a number to override)"
        )
    return value, f"epochs {value:,} ({key}.epochs: {value * per_epoch:,} optimisation steps)"
