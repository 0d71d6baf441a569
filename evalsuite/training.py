"""The training loop the small CNNs share (face CNN recognizer, person recognizers)."""
from __future__ import annotations

from typing import Callable

import torch
from evalsuite.progress import tqdm


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial batch is dropped), at least one."""
    return max(1, n // batch_size)


def train_epochs(n: int, batch_size: int, epochs: int, generator: torch.Generator, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, batch_loss: Callable[[torch.Tensor], torch.Tensor], description: str) -> float:
    """``epochs`` passes over a seeded permutation of ``n`` items in batches of ``batch_size``:
    ``batch_loss(indices)`` -> loss, then one optimizer and scheduler step. Returns the last loss."""
    steps = steps_per_epoch(n, batch_size)
    loss = torch.zeros(())
    with tqdm(total=epochs * steps, desc=description, unit="batch", leave=False) as progress:
        for _epoch in range(epochs):
            order = torch.randperm(n, generator=generator)
            for step in range(steps):
                loss = batch_loss(order[step * batch_size:(step + 1) * batch_size])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.3f}")
    return float(loss.item())
