"""A timm backbone seen as K region features (the paper's Eq. 1).

CNNs: the last feature map (N, C, M, M) reshaped to (N, K = M*M, C), regions in row-major order.
ViT-style models: the patch tokens of `forward_features` (class and register tokens, timm's
`num_prefix_tokens`, dropped), in the patch grid's row-major order. NHWC feature maps (e.g. Swin)
are handled by their `output_fmt`.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InputError


class RegionBackbone(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.num_features = int(getattr(net, "num_features", 0) or 0)
        cfg = getattr(net, "pretrained_cfg", None) or {}
        self.mean = tuple(cfg.get("mean", (0.485, 0.456, 0.406)))
        self.std = tuple(cfg.get("std", (0.229, 0.224, 0.225)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return to_regions(self.net, self.net.forward_features(x))


def to_regions(net: nn.Module, f: torch.Tensor) -> torch.Tensor:
    """(N, K, C) region features from a timm model's `forward_features` output."""
    if f.ndim == 4:
        if str(getattr(net, "output_fmt", "NCHW")) == "NHWC":
            return f.flatten(1, 2)
        return f.flatten(2).transpose(1, 2)
    if f.ndim == 3:
        prefix = getattr(net, "num_prefix_tokens", None)
        if prefix is None:
            t = f.shape[1]
            prefix = 0 if math.isqrt(t) ** 2 == t else 1 if math.isqrt(t - 1) ** 2 == t - 1 else -1
            if prefix < 0:
                raise InputError(f"{type(net).__name__}: cannot tell its {t} tokens apart into a square patch grid")
        return f[:, int(prefix):]
    raise InputError(f"{type(net).__name__}: forward_features gave a {f.ndim}-d tensor; expected a feature map or tokens")


def grid_shape(k: int) -> tuple[int, int]:
    """(M, M) for K = M*M regions; (1, K) when K is not a square."""
    m = math.isqrt(k)
    return (m, m) if m * m == k else (1, k)
