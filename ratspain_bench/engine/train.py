"""The training loop and its two batch sources (images with on-the-fly augmentation; cached features).

The loop does nothing per step beyond the step itself: batches are gathered from tensors already in
memory, the loss is summed on the device and read once per epoch (no per-step host sync).
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import nn

from .augment import Normalizer, random_crop_flip
from .device import autocast


def make_optimizer(params, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, weight_decay=weight_decay, foreach=True)


def batch_order(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A shuffled epoch in batches; a last batch of one sample is dropped (BatchNorm needs two)."""
    perm = torch.randperm(n, generator=generator)
    chunks = list(perm.split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks.pop()
    return chunks


class ImageBatches:
    """uint8 NHWC images -> augmented, normalised float batches on the device."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, crop: int, normalizer: Normalizer,
                 batch_size: int, flip: bool = True):
        self.images, self.labels, self.crop, self.norm = images, labels, crop, normalizer
        self.batch_size, self.flip = batch_size, flip

    def epoch(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for idx in batch_order(len(self.labels), self.batch_size, generator):
            x = random_crop_flip(self.images, self.crop, generator, self.flip, index=idx)
            yield self.norm(x), self.labels[idx].to(self.norm.device, non_blocking=True)


class FeatureBatches:
    """Cached features (V, N, K, C), widened to float32 once: each sample of an epoch takes one of its V
    views at random.

    Every batch is gathered into one buffer allocated once, not a fresh multi-megabyte tensor per step
    (a frozen PainSeeker head fit on the CPU: 1.1x faster in `benchmarks/head_fit.py`, 2.2x in a first
    micro-test in a fresh process; bitwise the same). A batch is therefore valid
    until the next one is drawn; the loop finishes each step (its graph included) before drawing the next."""

    def __init__(self, feats: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device):
        self.views, self.n = feats.shape[:2]
        self.rows = feats.to(device).float().reshape(self.views * self.n, *feats.shape[2:])  # row v * N + i: view v of sample i
        self.labels, self.batch_size, self.device = labels.to(device), batch_size, device
        self.buffer = torch.empty((min(batch_size, self.n), *self.rows.shape[1:]), dtype=torch.float32, device=device)

    def epoch(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        views = torch.randint(0, self.views, (self.n,), generator=generator).to(self.device)
        for idx in batch_order(self.n, self.batch_size, generator):
            idx = idx.to(self.device)
            yield torch.index_select(self.rows, 0, views[idx] * self.n + idx, out=self.buffer[:len(idx)]), self.labels[idx]


def train(model: nn.Module, loss_fn: Callable, batches, *, epochs: int, optimizer: torch.optim.Optimizer,
          generator: torch.Generator, device: torch.device, amp: bool = True, progress=None, log_metric=None) -> list:
    """Run `epochs` epochs; returns the mean training loss of each. `loss_fn(model_output, y)` gives a scalar, or
    one loss per head of a stacked model (H,): their sum is minimised and each epoch's entry is the list of H means."""
    losses = []
    model.train()
    for epoch in range(1, epochs + 1):
        total = torch.zeros((), device=device)
        seen = 0
        for x, y in batches.epoch(generator):
            with autocast(device, amp):
                loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            (loss if loss.ndim == 0 else loss.sum()).backward()
            optimizer.step()
            total = total + loss.detach().float() * len(y)  # a vector for a stacked model
            seen += len(y)
        mean = total.double() / max(seen, 1)
        losses.append(float(mean.item()) if mean.ndim == 0 else mean.tolist())
        if progress:
            progress(epoch=epoch, epochs=epochs, loss=float(mean.mean()))
        if log_metric:
            log_metric("train_loss", float(mean.mean()), epoch)
    model.eval()
    return losses
