"""A small CNN trained from scratch on CPU: the realness critic and the attribute classifier.

One convolutional trunk (four 3x3 conv + BatchNorm + ReLU blocks, the first with stride 2,
max-pooling between the next ones, global average pooling) and one linear head per task.
Training is seeded (initialisation and batch order), Adam, cross-entropy per head with
``-1`` targets ignored.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from evalsuite.progress import tqdm


class SmallCNN(nn.Module):
    """uint8 (B, 3, H, W) images -> one logit tensor per head (``heads`` = classes per head)."""

    def __init__(self, heads: Sequence[int], width: int = 16) -> None:
        super().__init__()
        if not heads or any(int(k) < 1 for k in heads):
            raise ValueError(f"heads must list at least one positive class count, got {list(heads)}")
        w = int(width)

        def block(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.trunk = nn.Sequential(
            *block(3, w, stride=2), *block(w, 2 * w), nn.MaxPool2d(2),
            *block(2 * w, 4 * w), nn.MaxPool2d(2), *block(4 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.heads = nn.ModuleList(nn.Linear(4 * w, int(k)) for k in heads)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images.float() - 128.0) / 64.0
        features = self.trunk(x)
        return [head(features) for head in self.heads]


def train_classifier(
    model: SmallCNN,
    images: torch.Tensor,
    targets: torch.Tensor,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: str = "cpu",
    description: str = "train classifier",
) -> SmallCNN:
    """Fit ``model`` on uint8 images and (N, heads) long targets (-1 = unknown); returns it in eval mode."""
    if targets.dim() == 1:
        targets = targets[:, None]
    if targets.shape != (images.shape[0], len(model.heads)):
        raise ValueError(f"targets {tuple(targets.shape)} do not match {images.shape[0]} images x {len(model.heads)} heads")
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(int(seed))
    n = images.shape[0]
    for _ in tqdm(range(int(epochs)), desc=description, unit="epoch", leave=False):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, int(batch_size)):
            index = order[start:start + int(batch_size)]
            if index.numel() < 2:  # BatchNorm needs two samples
                continue
            logits = model(images[index].to(device))
            target = targets[index].to(device)
            losses = [F.cross_entropy(out, target[:, h], ignore_index=-1) for h, out in enumerate(logits) if bool((target[:, h] >= 0).any())]
            if not losses:
                continue
            loss = torch.stack(losses).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def predict(model: SmallCNN, images: torch.Tensor, batch_size: int = 128, device: str = "cpu") -> list[torch.Tensor]:
    """Logits per head (CPU float tensors) for uint8 images."""
    model.to(device).eval()
    outs: list[list[torch.Tensor]] = [[] for _ in model.heads]
    for start in range(0, images.shape[0], int(batch_size)):
        for h, logits in enumerate(model(images[start:start + int(batch_size)].to(device))):
            outs[h].append(logits.float().cpu())
    return [torch.cat(o) if o else torch.empty(0, len_) for o, len_ in zip(outs, (head.out_features for head in model.heads))]
