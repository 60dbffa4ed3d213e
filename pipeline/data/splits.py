"""Train, validation and test sets as uint8 tensors, and the seeded choices of which images go where."""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass
class Split:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,), -1 when unlabelled

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, n: int | None, seed: int) -> "Split":
        """A seeded random subset of ``n`` items (all of them when ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        idx = sample_indices(len(self), n, seed)
        return Split(self.images[idx], self.labels[idx])


@dataclass
class Dataset:
    train: Split
    test: Split
    files: list[Path]  # the raw files read, sorted (prepare hashes them)
    classes: list[str] | None  # class names; None when unlabelled (then every label is -1)
    skipped: list[tuple[str, str]]  # (path, reason) of unreadable images that were skipped
    val: Split | None = None  # training images held out of training (prepare.val_fraction); None: not split yet


def sample_indices(n: int, k: int | None, seed: int) -> torch.Tensor:
    """Sorted indices of a seeded random choice of ``k`` of ``n`` items (all when ``k`` is None or >= n)."""
    if k is None or k >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k].sort().values


def grid_indices(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Which ``n`` images a grid of the data shows: a seeded random sample of all of them, and
    where there are labels (>= 0) stratified: the classes take turns, each giving its images in
    a seeded random order, until ``n`` are chosen (a class that runs out drops out), so every
    class shows up and none twice as often as another while each has images left. In the
    order chosen (rows mix the classes)."""
    g = torch.Generator().manual_seed(seed)
    n = min(n, len(labels))
    order = torch.randperm(len(labels), generator=g)
    if len(labels) == 0 or int(labels.min()) < 0:  # unlabelled
        return order[:n]
    queues = [order[labels[order] == c].tolist() for c in torch.unique(labels).tolist()]
    turns = torch.randperm(len(queues), generator=g).tolist()  # which class goes first, second, ...
    chosen = []
    while len(chosen) < n:
        for c in turns:
            if queues[c] and len(chosen) < n:
                chosen.append(queues[c].pop(0))
    return torch.tensor(chosen, dtype=torch.long)


def split_indices(labels: np.ndarray, test_fraction: float, seed: int, stratify: bool):
    """Seeded train/test index arrays (each sorted); stratified by ``labels`` when asked and
    possible (every class has 2+ items and both sides can hold one of each)."""
    from sklearn.model_selection import train_test_split

    n_test = math.ceil(test_fraction * len(labels))  # scikit-learn's rule
    counts = np.unique(labels, return_counts=True)[1]
    possible = counts.min() >= 2 and min(n_test, len(labels) - n_test) >= len(counts)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)),
        test_size=test_fraction,
        random_state=seed,
        stratify=labels if stratify and possible else None,
    )
    return np.sort(idx_train), np.sort(idx_test)


def hold_out(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """``split`` less a seeded share ``fraction`` of its images (the share rounded up, stratified
    by label where labelled, as :func:`split_indices`), and that share: the validation split."""
    from pipeline import PipelineError

    n_val = math.ceil(fraction * len(split))
    if n_val >= len(split):
        raise PipelineError(
            f"prepare.val_fraction: {fraction} of {len(split)} training images leaves none to train on: lower it (0: no "
            "validation split)"
        )
    labels = split.labels.numpy()
    keep, held = (torch.from_numpy(i) for i in split_indices(labels, fraction, seed, len(labels) > 0 and labels.min() >= 0))
    return Split(split.images[keep], split.labels[keep]), Split(split.images[held], split.labels[held])
