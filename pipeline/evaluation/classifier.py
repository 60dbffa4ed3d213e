"""A small CNN classifier trained on the prepared data's labels.

Its penultimate layer is the feature space of "domain FID": the Frechet distance in
the features of a network trained on the domain itself (as MNIST papers do with
LeNet). It needs no download, so evaluation works offline. Numbers are comparable
only between runs that share the same classifier (same data, params and seed).
"""

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.data import Split
from pipeline.progress import progress


class DomainClassifier(nn.Module):
    def __init__(self, channels: int, num_classes: int, feature_dim: int = 64):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations for images x in [0, 1]: the domain feature space."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_classifier(
    model: DomainClassifier, train: Split, *, epochs: int, batch_size: int, lr: float, adaptive=None
) -> list[dict]:
    """Cross-entropy training with Adam on the in-memory uint8 images; returns the
    per-epoch mean training loss and accuracy. ``adaptive``: ``threads: adaptive``'s count
    (:class:`pipeline.hardware.threads.Adaptive`), measured again between steps."""
    device = next(model.parameters()).device
    images, labels = train.images.to(device), train.labels.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, fused=True)  # as the VAEs' (training/loop.py)
    model.train()
    history = []
    bar = progress(total=epochs * len(images), desc="domain classifier", unit="img", unit_scale=True)
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(len(images)).to(device)
        loss_sum, correct = torch.zeros((), device=device), torch.zeros((), device=device)
        for i in range(0, len(images), batch_size):
            idx = perm[i : i + batch_size]
            logits = model(images[idx].float() / 255)
            loss = F.cross_entropy(logits, labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(idx)
            correct += (logits.argmax(1) == labels[idx]).sum()
            bar.update(len(idx))
            if adaptive is not None and (note := adaptive.tick()):
                bar.write(f"domain classifier: epoch {epoch}: {note}")
        history.append(
            {"epoch": epoch, "loss": loss_sum.item() / len(images), "accuracy": correct.item() / len(images)}
        )
        bar.set_postfix(epoch=epoch, accuracy=f"{history[-1]['accuracy']:.3f}")
    bar.close()
    model.eval()
    return history


@torch.no_grad()
def accuracy(model: DomainClassifier, split: Split, batch_size: int = 1000) -> float:
    device = next(model.parameters()).device
    model.eval()
    correct = 0
    for i in range(0, len(split), batch_size):
        x = split.images[i : i + batch_size].to(device).float() / 255
        correct += (model(x).argmax(1).cpu() == split.labels[i : i + batch_size]).sum().item()
    return correct / len(split)
