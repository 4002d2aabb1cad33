"""`timm:<model>`: any timm backbone + global average pooling over its regions + a linear 2-class head
(the `au` task: a multi-head linear layer, 3 grade logits for each of the 4 AUs).

`resnet18` (= `timm:resnet18`) is the paper's deep baseline (Table 3 row ResNet-18), trained with the
same settings as PainSeeker: batch 64, Adam, lr 1e-4, weight decay 0.01, 256 px images with random
224 crops and horizontal flips. Settings the paper leaves open (epochs, pretraining, test view) and
the `quick` profile are described in `ratspain_bench.engine.config`.
For ViT-style backbones the pooled regions are the patch tokens (class/register tokens dropped).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from ..engine.config import DeepConfig
from .deep import DeepMethod


class GapLinear(nn.Module):
    """Global average pooling over the K regions, then a linear layer to logits of `out_shape` per image:
    (2,) classes, or (4, 3) for one 3-grade head per AU (the heads' weights stacked in one layer)."""

    def __init__(self, num_features: int, out_shape: tuple[int, ...] = (2,)):
        super().__init__()
        self.out_shape = tuple(out_shape)
        self.fc = nn.Linear(num_features, math.prod(self.out_shape))

    def forward(self, regions):  # (B, K, C) -> (B, *out_shape)
        return self.fc(regions.mean(1)).unflatten(1, self.out_shape)


@dataclass(frozen=True)
class TimmLinearConfig(DeepConfig):
    """A timm backbone with a linear head; fields and profiles as in `DeepConfig`."""


class TimmLinear(DeepMethod):
    Config = TimmLinearConfig
    family = "timm"
    parametric = "model"
    SEARCH_SPACE = {"lr": {"low": 1e-5, "high": 1e-2, "log": True}, "weight_decay": {"low": 1e-5, "high": 0.1, "log": True}}

    def make_head(self, num_features: int, num_regions: int) -> nn.Module:
        return GapLinear(num_features, self.out_shape())

    def head_inputs(self, feats, stats):
        """Frozen mode: the regions averaged once per image (the head's pooling, done before training instead of
        at every step: the linear layer then sees exactly the vectors it would see)."""
        return super().head_inputs(feats, stats).mean(dim=2, keepdim=True)
