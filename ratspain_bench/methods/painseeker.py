"""PainSeeker (the paper's Sec. "Painseeker for evaluating pain of rats by non-frontal facial expressions").

- Eq. (1): the backbone's last feature map f(X) in R^{M x M x d_x} reshaped to K = M x M region
  features x_j (ViT-style backbones: the patch tokens, class/register tokens dropped).
- Eq. (2): g, a linear layer, scores each region; beta_j = sigmoid(g(x_j)) / sum_k sigmoid(g(x_k)).
- Eq. (3): y^p = softmax(h(sum_j beta_j x_j)), h a linear layer.
- Eq. (4)-(6): loss = CE + lambda * PRSC, PRSC (Eq. 5) per image = mean over the k_high largest
  beta_j of max(0, delta - (beta_j - mean of the other K - k_high betas)), averaged over the batch.

The paper's setting: ResNet-18 convolutional layers, lambda 0.1, delta 0.2, k_high 5, and the
training settings of `ratspain_bench.engine.config` (`paper` profile). `painseeker-noprsc` is
lambda = 0 (CE only). Command-line and output names: `lambda`, `delta`, `k_high`.

A study's grid (the paper's Figure 5): frozen heads whose configs differ only in lambda, delta or k_high
see the same features, initial weights and batches, so a fold fits them as one `StackedHeads` (see
`DeepMethod.fit_together`): the same maths as separate fits, each product over a batch serving all heads.

PainSeeker-AU (the `au` task, our extension): the same pieces once per action unit a. g maps each
region to 4 scores, beta_a = sigmoid(g_a(x_j)) / sum_k sigmoid(g_a(x_k)) (Eq. 2 per AU), the fused
feature sum_j beta_a,j x_j (Eq. 3 per AU) feeds a 3-grade linear head h_a; loss = the mean over AUs
of the cross-entropy (blank grades ignored, `deep.au_cross_entropy`) + lambda * the mean over AUs of
PRSC(beta_a) (Eq. 5; it needs no grade, so every image counts). Predictions carry each AU's beta map
(`au_attention`) and their mean (`attention`, for heatmaps and localisation).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..engine.augment import eval_view, to_uint8_tensor
from ..engine.backbone import grid_shape
from ..engine.config import DeepConfig
from ..tasks import AUS, GRADES, by_au
from .deep import DeepMethod, au_cross_entropy, au_proba
from ..errors import InputError
from .base import Context, Predictions, TestSet, field_of


def prsc_loss(beta: torch.Tensor, k_high: int, margin: float) -> torch.Tensor:
    """Pain-related score calibration, Eq. (5), averaged over the batch.

    `beta` (N, K) region scores. For each image: the mean, over its k_high largest scores b, of
    max(0, margin - (b - mean of the remaining K - k_high scores)).
    """
    if beta.ndim != 2:
        raise ValueError(f"beta must be (N, K), got shape {tuple(beta.shape)}")
    k = beta.shape[1]
    if not 1 <= int(k_high) < k:
        raise ValueError(f"k_high must satisfy 1 <= k_high < K = {k}, got {k_high}")
    return prsc_of_ranked(beta.sort(dim=1, descending=True).values, k_high, margin).mean()


def prsc_of_ranked(ranked: torch.Tensor, k_high: int, margin) -> torch.Tensor:
    """Eq. (5) per image from its scores sorted in descending order (..., K) -> (...); `margin` broadcasts."""
    high, rest = ranked[..., :k_high], ranked[..., k_high:]
    gap = high - rest.mean(dim=-1, keepdim=True)
    return F.relu(margin - gap).mean(dim=-1)


class PainSeekerHead(nn.Module):
    """g (region scores, Eq. 2), the beta-weighted fusion and h (Eq. 3). Returns (logits, beta)."""

    def __init__(self, num_features: int, num_classes: int = 2):
        super().__init__()
        self.g = nn.Linear(num_features, 1)
        self.h = nn.Linear(num_features, num_classes)

    def forward(self, regions: torch.Tensor):  # (B, K, C)
        s = torch.sigmoid(self.g(regions).squeeze(-1))  # (B, K)
        beta = s / s.sum(dim=1, keepdim=True)
        fused = torch.bmm(beta.unsqueeze(1).to(regions.dtype), regions).squeeze(1)  # sum_j beta_j x_j
        return self.h(fused), beta


class StackedHeads(nn.Module):
    """H `PainSeekerHead`s of one shape as one module, for heads that train on the same batches (a study's points,
    `DeepMethod.fit_together`): one matrix product gives the H region scores g (Eq. 2) and one batched product the
    H fused features (Eq. 3), so each product over the (B, K, C) regions serves all H heads. Returns ((B, H, 2) logits,
    (B, H, K) beta); `unstack(heads)` copies each head's trained weights back."""

    def __init__(self, heads: list[PainSeekerHead]):
        super().__init__()
        self.g_weight = nn.Parameter(torch.stack([h.g.weight.detach()[0] for h in heads]))  # (H, C)
        self.g_bias = nn.Parameter(torch.stack([h.g.bias.detach()[0] for h in heads]))  # (H,)
        self.h_weight = nn.Parameter(torch.stack([h.h.weight.detach() for h in heads]))  # (H, 2, C)
        self.h_bias = nn.Parameter(torch.stack([h.h.bias.detach() for h in heads]))  # (H, 2)

    def forward(self, regions: torch.Tensor):  # (B, K, C)
        b, k, c = regions.shape
        # g as (H, C) x (C, B K): the scores come out as (H, B, K), and this product shape is the faster one on the CPU
        s = torch.sigmoid(torch.addmm(self.g_bias[:, None], self.g_weight, regions.reshape(b * k, c).t())).view(-1, b, k).transpose(0, 1)
        beta = s / s.sum(dim=2, keepdim=True)  # (B, H, K)
        fused = torch.bmm(beta.to(regions.dtype), regions)  # (B, H, C): sum_j beta_j x_j per head
        logits = torch.bmm(fused.transpose(0, 1), self.h_weight.transpose(1, 2)).transpose(0, 1) + self.h_bias
        return logits, beta

    @torch.no_grad()
    def unstack(self, heads: list[PainSeekerHead]) -> None:
        for i, h in enumerate(heads):
            h.g.weight.copy_(self.g_weight[i:i + 1])
            h.g.bias.copy_(self.g_bias[i:i + 1])
            h.h.weight.copy_(self.h_weight[i])
            h.h.bias.copy_(self.h_bias[i])


class PainSeekerAUHead(nn.Module):
    """PainSeeker-AU: g scores each region once per AU (Eq. 2 per AU), each AU fuses the regions with its own
    beta (Eq. 3 per AU) into its own linear head h_a of 3 grade logits. Returns ((B, A, 3) logits, (B, A, K) beta)."""

    def __init__(self, num_features: int, num_aus: int = len(AUS), num_grades: int = len(GRADES)):
        super().__init__()
        self.g = nn.Linear(num_features, num_aus)
        self.h = nn.ModuleList(nn.Linear(num_features, num_grades) for _ in range(num_aus))

    def forward(self, regions: torch.Tensor):  # (B, K, C)
        s = torch.sigmoid(self.g(regions)).transpose(1, 2)  # (B, A, K)
        beta = s / s.sum(dim=2, keepdim=True)
        fused = torch.bmm(beta.to(regions.dtype), regions)  # (B, A, C): sum_j beta_a,j x_j per AU
        return torch.stack([h(fused[:, a]) for a, h in enumerate(self.h)], dim=1), beta


@dataclass(frozen=True)
class PainSeekerConfig(DeepConfig):
    """PainSeeker's settings: `lambda` (PRSC weight), `delta` (margin), `k_high` (high-score regions);
    `heatmaps`: how many beta heatmaps over test faces to save in the fold's work_dir (0: none).
    The other fields and the profiles are those of `DeepConfig` (see `ratspain_bench.engine.config`)."""

    prsc_lambda: float = field_of("lambda", 0.1)
    prsc_delta: float = field_of("delta", 0.2)
    k_high: int = field_of("k_high", 5)
    heatmaps: int = 6


class PainSeeker(DeepMethod):
    Config = PainSeekerConfig
    family = "painseeker"
    parametric = "model"
    # `study tune`: the ranges of the paper's Figure 5 grid, a little wider; k_high must stay below the number
    # of regions K (49 for ResNet-18 at 224 px crops): a trial whose k_high is too large fails, the search goes on.
    SEARCH_SPACE = {"lambda": {"low": 0.01, "high": 2.0, "log": True}, "delta": {"low": 0.01, "high": 0.5},
                    "k_high": {"low": 1, "high": 20}}
    # `study sensitivity`: the paper's Figure 5, one parameter at a time with the others at 0.1 / 0.2 / 5
    # ("Hyper-parameter sensitivity analysis": lambda, delta and K_h over these five values each).
    SENSITIVITY_GRID = {"lambda": [0.05, 0.1, 0.5, 1, 1.5], "delta": [0.05, 0.1, 0.15, 0.2, 0.5], "k_high": [3, 5, 10, 15, 20]}
    PLOT_SYMBOLS = {"lambda": "λ", "delta": "δ", "k_high": "$K_h$"}

    @classmethod
    def study_settings(cls, config, grid: dict) -> tuple[dict, str]:
        """Every point saves no beta heatmaps (`heatmaps` 0: a study's folds are scored, not looked at, and a Figure 5
        study has 78 of them). K regions must exceed the grid's largest k_high: widen the crop (and image) in steps of
        8 px until the backbone gives them (features cost ~ crop^2, so the smallest such crop)."""
        quiet = {"heatmaps": 0}
        if "k_high" not in grid:
            return quiet, ""
        from dataclasses import replace

        k_max = max(int(v) for v in grid["k_high"])
        try:
            k, _ = cls(config, Context(device="cpu")).probe()
            if k > k_max:
                return quiet, ""
            crop, margin = config.crop_size, config.image_size - config.crop_size
            for _ in range(24):
                crop += 8
                wider = replace(config, crop_size=crop, image_size=crop + margin)
                k, _ = cls(wider, Context(device="cpu")).probe()
                if k > k_max:
                    return {**quiet, "crop_size": crop, "image_size": crop + margin}, (
                        f"k_high up to {k_max} needs more than {k_max} regions: crop_size raised to {crop} and "
                        f"image_size to {crop + margin} ({k} regions) for every point of this study")
        except Exception as e:  # a backbone that cannot be probed here: run as configured
            return quiet, f"could not check the number of regions ({type(e).__name__}: {e})"
        return quiet, ""

    LOSS_FIELDS = ("prsc_lambda", "prsc_delta", "k_high")  # a study's Figure 5 points of a fold train as one `StackedHeads`

    @classmethod
    def stack_heads(cls, heads: list[nn.Module]) -> StackedHeads:
        return StackedHeads(heads)

    @classmethod
    def stacked_loss(cls, configs: list[PainSeekerConfig]):
        """Eq. (6) of each config on `StackedHeads`' output: (H,) losses, CE + lambda_h * PRSC(beta_h; k_high_h, delta_h)."""
        lam = torch.tensor([c.prsc_lambda for c in configs])
        margin = torch.tensor([c.prsc_delta for c in configs])
        by_k = {k: torch.tensor([i for i, c in enumerate(configs) if c.k_high == k]) for k in {c.k_high for c in configs}}

        def loss(output, y: torch.Tensor) -> torch.Tensor:
            logits, beta = output
            ce = F.cross_entropy(logits.float().transpose(1, 2), y.unsqueeze(1).expand(-1, len(configs)), reduction="none").mean(0)
            ranked = beta.float().sort(dim=2, descending=True).values  # (B, H, K)
            prsc = torch.empty_like(ce)
            for k, idx in by_k.items():
                idx = idx.to(ce.device)
                prsc[idx] = prsc_of_ranked(ranked[:, idx], k, margin.to(ce.device)[idx, None]).mean(0)
            return ce + lam.to(ce.device) * prsc

        return loss

    def attention_view(self) -> tuple[int, float]:
        """k_high regions; the test view is the centre crop (crop/size of the image) or the whole image resized."""
        c = self.config
        return c.k_high, (c.crop_size / c.image_size if c.test_crop == "center" else 1.0)

    def make_head(self, num_features: int, num_regions: int) -> nn.Module:
        c = self.config
        if not 1 <= c.k_high < num_regions:
            m = grid_shape(num_regions)
            raise InputError(
                f"k_high={c.k_high} must be at least 1 and smaller than the number of regions K={num_regions} "
                f"({m[0]}x{m[1]} grid of {c.model} at crop_size {c.crop_size}); lower k_high or raise crop_size")
        self.num_regions = num_regions
        return PainSeekerAUHead(num_features) if self.context.task == "au" else PainSeekerHead(num_features)

    def loss(self, output, y: torch.Tensor) -> torch.Tensor:
        """Eq. (6): CE + lambda * PRSC; in the au task both terms are means over the AUs."""
        logits, beta = output
        c = self.config
        if self.context.task == "au":
            ce = au_cross_entropy(logits, y)
            if c.prsc_lambda == 0:
                return ce
            # (B, A, K) -> (B * A, K): the batch mean over images and AUs is the mean over AUs of PRSC(beta_a)
            return ce + c.prsc_lambda * prsc_loss(beta.flatten(0, 1).float(), c.k_high, c.prsc_delta)
        ce = F.cross_entropy(logits.float(), y)
        if c.prsc_lambda == 0:
            return ce
        return ce + c.prsc_lambda * prsc_loss(beta.float(), c.k_high, c.prsc_delta)

    def predict(self, test: TestSet) -> Predictions:
        outs = self.forward_test(test)
        if outs:
            logits = torch.cat([o[0].float() for o in outs])
            beta = torch.cat([o[1].float() for o in outs]).cpu().numpy()
        else:  # no test image
            logits, beta = torch.zeros(0, *self.out_shape()), np.zeros((0, *self.out_shape()[:-1], 1))
        grid = grid_shape(beta.shape[-1])
        if self.context.task == "au":  # beta (N, A, K): one map per AU, their mean as the image's attention
            maps = beta.reshape(len(beta), len(AUS), *grid)
            pred = Predictions.from_au_proba(au_proba(logits), attention=maps.mean(axis=1),
                                             au_attention=by_au(maps))
        else:
            prob = torch.softmax(logits, 1)[:, 1].cpu().numpy().astype(float)
            pred = Predictions(labels=logits.argmax(1).cpu().numpy(), scores=prob, attention=beta.reshape(len(beta), *grid))
        if outs and self.context.work_dir is not None and self.config.heatmaps > 0:
            self.save_heatmaps(test, pred)
        return pred

    def save_heatmaps(self, test: TestSet, pred: Predictions) -> None:
        """The paper's Figure 4: beta over a few test faces, across pose bins when they are known."""
        from ..engine.heatmaps import choose, save_heatmaps

        picked = choose(test.meta, pred.scores, self.config.heatmaps, test.keys)
        idx = [i for i, _ in picked]
        faces = eval_view(to_uint8_tensor(np.asarray(test.images)[idx]), self.config.crop_size, self.config.test_crop).numpy()
        save_heatmaps(faces, pred.attention[idx], [t for _, t in picked], pred.scores[idx], self.context.work_dir)

    def explain(self, test: TestSet, pred: Predictions, names: list[str], out_dir: Path) -> list[Path]:
        """Beta over each face as the model saw it (the test view), one PNG per image: `out_dir/<name>.png`."""
        from PIL import Image

        from ..engine.heatmaps import overlay

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        faces = eval_view(to_uint8_tensor(np.asarray(test.images)), self.config.crop_size, self.config.test_crop).numpy()
        paths = []
        for face, beta, name in zip(faces, pred.attention, names):
            path = out_dir / f"{name}.png"
            Image.fromarray(overlay(face, np.asarray(beta, dtype=float))).save(path, compress_level=1)
            paths.append(path)
        return paths
