"""Uncertainty and paired tests at the level the protocol cares about: whole animals and shared images.

- `bootstrap_over_subjects`: resample whole animals with replacement; each resample's pooled confusion
  matrix is the sum of the drawn animals' confusion matrices (an animal drawn twice counts twice).
  Percentile interval; NumPy's legacy `RandomState` stream, which NumPy keeps frozen, so a seed
  gives the same interval on every NumPy version.
- `mcnemar`: McNemar's test on the discordant pairs of two classifiers on the same images. Exact
  two-sided binomial test by default (valid at any count); the chi-square statistic with continuity
  correction, (|b - c| - 1)^2 / (b + c), is available as `method="chi2"`.
- `chance_f1`: the exact expected F1 of a fair coin (each image called pain with probability 1/2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..metrics import Confusion

#: confusion matrices as arrays: the last axis is (tp, fp, fn, tn)
TP, FP, FN, TN = range(4)


def as_array(confusions) -> np.ndarray:
    """(..., 4) float array (tp, fp, fn, tn) from Confusion objects or nested lists of them."""
    if isinstance(confusions, Confusion):
        return np.array([confusions.tp, confusions.fp, confusions.fn, confusions.tn], dtype=float)
    return np.stack([as_array(c) for c in confusions]) if len(confusions) else np.zeros((0, 4))


def f1_of(cm: np.ndarray) -> np.ndarray:
    """Vectorised F1 of the pain class over the last axis; 0 where there are no positives at all."""
    num = 2 * cm[..., TP]
    den = 2 * cm[..., TP] + cm[..., FP] + cm[..., FN]
    return np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 0)


def accuracy_of(cm: np.ndarray) -> np.ndarray:
    n = cm.sum(axis=-1)
    return np.divide(cm[..., TP] + cm[..., TN], n, out=np.zeros_like(n, dtype=float), where=n > 0)


METRICS = {"f1": f1_of, "accuracy": accuracy_of}


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def contains(self, x: float, tol: float = 1e-12) -> bool:
        return self.low - tol <= x <= self.high + tol


def bootstrap_over_subjects(per_subject, n_resamples: int = 2000, seed: int = 0, level: float = 0.95) -> dict[str, Interval]:
    """Percentile intervals of pooled F1, pooled accuracy and the mean of per-subject F1 and accuracy.

    `per_subject`: array (S, 4) of per-subject confusion matrices, or (K, S, 4) for K seeds of one
    configuration; with seeds, each resample draws one set of animals, computes the metric for every
    seed on it and averages over seeds (the interval of the seed-mean, animals resampled jointly).
    Returns keys `pooled_f1`, `pooled_accuracy`, `mean_f1`, `mean_accuracy`.
    """
    cm = np.asarray(per_subject, dtype=float)
    if cm.ndim == 2:
        cm = cm[None]
    k, s, _ = cm.shape
    if s == 0:
        nan = Interval(float("nan"), float("nan"))
        return {key: nan for key in ("pooled_f1", "pooled_accuracy", "mean_f1", "mean_accuracy")}
    idx = np.random.RandomState(seed).randint(0, s, size=(n_resamples, s))
    drawn = cm[:, idx]                      # (K, B, S, 4)
    pooled = drawn.sum(axis=2)              # (K, B, 4)
    alpha = (1 - level) / 2
    out = {}
    for name, fn in METRICS.items():
        pooled_stat = fn(pooled).mean(axis=0)           # (B,)
        mean_stat = fn(drawn).mean(axis=2).mean(axis=0)  # (B,)
        for key, stat in ((f"pooled_{name}", pooled_stat), (f"mean_{name}", mean_stat)):
            lo, hi = np.quantile(stat, [alpha, 1 - alpha])
            out[key] = Interval(float(lo), float(hi))
    return out


@dataclass(frozen=True)
class McNemar:
    """b: images only A gets right; c: images only B gets right; n_shared: images both files scored."""

    b: int
    c: int
    n_shared: int
    p_value: float
    method: str

    @property
    def statistic(self) -> float:
        """Chi-square with continuity correction (reported for both methods, used for p only by chi2)."""
        n = self.b + self.c
        return (abs(self.b - self.c) - 1) ** 2 / n if n else 0.0


def binomial_two_sided_p(k: int, n: int) -> float:
    """Exact two-sided p of k successes in n fair trials: min(1, 2 P(X <= min(k, n - k)))."""
    if n == 0:
        return 1.0
    m = min(k, n - k)
    tail = Fraction(sum(math.comb(n, i) for i in range(m + 1)), 2 ** n)
    return float(min(Fraction(1), 2 * tail))


def mcnemar_counts(b: int, c: int, n_shared: int | None = None, method: str = "exact") -> McNemar:
    n = b + c
    if method == "exact":
        p = binomial_two_sided_p(b, n)
    elif method == "chi2":
        stat = (abs(b - c) - 1) ** 2 / n if n else 0.0
        p = math.erfc(math.sqrt(stat / 2)) if n else 1.0  # survival function of chi-square with 1 dof
    else:
        raise ValueError(f"unknown McNemar method {method!r} (exact or chi2)")
    return McNemar(int(b), int(c), int(n if n_shared is None else n_shared), float(p), method)


def mcnemar(y_true, pred_a, pred_b, method: str = "exact") -> McNemar:
    """McNemar's test of classifiers A and B on the same images (arrays aligned image by image)."""
    t, a, b = (np.asarray(x).astype(int) for x in (y_true, pred_a, pred_b))
    ra, rb = a == t, b == t
    return mcnemar_counts(int((ra & ~rb).sum()), int((~ra & rb).sum()), len(t), method)


def _binom_pmf(n: int) -> np.ndarray:
    i = np.arange(n + 1)
    logc = np.array([math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) for j in i])
    return np.exp(logc - n * math.log(2))


def chance_f1(n_pos: int, n_neg: int) -> float:
    """Exact E[F1] when every image is called pain with probability 1/2, independently.

    TP ~ Bin(P, 1/2), FP ~ Bin(N, 1/2), FN = P - TP, so F1 = 2 TP / (TP + FP + P); the expectation
    is summed over both binomials (F1 = 0 when there is no positive image). For large counts it
    approaches 2 pi / (1 + 2 pi), pi = P / (P + N), the F1 of the expected confusion matrix.
    Expected accuracy and balanced accuracy are exactly 1/2.
    """
    if n_pos == 0:
        return 0.0
    tp = np.arange(n_pos + 1)[:, None]
    fp = np.arange(n_neg + 1)[None, :]
    f1 = 2 * tp / (tp + fp + n_pos)
    return float(_binom_pmf(n_pos) @ f1 @ _binom_pmf(n_neg))


def mean_std(values) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1); std is None for a single value."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None)
