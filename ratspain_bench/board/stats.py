"""Uncertainty and paired tests at the level the protocol cares about: whole animals and shared images.

- Resamples of rats (`rat_resamples`): a resample is a multiset of S rats drawn with replacement from
  S. There are only C(2S-1, S) distinct multisets (462 for 6 rats); up to `MAX_EXACT` of them they are
  all enumerated, each weighted by its multinomial probability S!/(prod m_i!) / S^S (m_i: how often
  rat i is drawn), so results are exact and need no seed. Above that, random resamples (NumPy's legacy
  `RandomState` stream, which NumPy keeps frozen, so a seed gives the same draws on every version).
- `bootstrap_over_subjects`: a resample's pooled confusion matrix is the sum of its rats' matrices (a rat
  drawn twice counts twice); weighted percentile interval (`weighted_quantile`).
- `paired_f1_p`: paired bootstrap over rats of the difference in pooled F1 of two rows on the same
  resamples (`paired_p` for any per-resample statistic); `holm`: Holm's step-down adjustment; `tiers`:
  rows that the data cannot separate, on pooled F1 or on any per-resample statistic (`statistic`).
- `icc_sums` / `icc_from_sums` / `resampled_icc`: ICC(A,1) of two "raters" (prediction, consensus) from the
  sufficient statistics (n, sum x, sum y, sum x^2, sum y^2, sum xy); per-rat sums times a resample's
  counts are the sums of the resample's rows (a rat drawn twice counts twice), so every resample's ICC is
  one vectorised expression.
- `mcnemar`: McNemar's test on the discordant pairs of two classifiers on the same images. Exact
  two-sided binomial test by default (valid at any count); the chi-square statistic with continuity
  correction, (|b - c| - 1)^2 / (b + c), is available as `method="chi2"`.
- `chance_f1`: the exact expected F1 of a fair coin (each image called pain with probability 1/2).

F1 is undefined (NaN here) where there is no pain image and no pain prediction; a mean over rats is
taken over the rats where it is defined, and resamples where a statistic is undefined are left out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from itertools import combinations_with_replacement
from typing import NamedTuple

import numpy as np

from ..metrics import Confusion

#: confusion matrices as arrays: the last axis is (tp, fp, fn, tn)
TP, FP, FN, TN = range(4)
#: enumerate every distinct resample of the rats up to this many, else draw random resamples
MAX_EXACT = 20_000
#: differences of F1 closer to 0 than this count as ties (on both sides of 0)
TIE = 1e-12


def as_array(confusions) -> np.ndarray:
    """(..., 4) float array (tp, fp, fn, tn) from Confusion objects or nested lists of them."""
    if isinstance(confusions, Confusion):
        return np.array([confusions.tp, confusions.fp, confusions.fn, confusions.tn], dtype=float)
    return np.stack([as_array(c) for c in confusions]) if len(confusions) else np.zeros((0, 4))


def f1_of(cm: np.ndarray) -> np.ndarray:
    """Vectorised F1 of the pain class over the last axis; NaN where undefined (no pain image, no pain prediction)."""
    num = 2 * cm[..., TP]
    den = 2 * cm[..., TP] + cm[..., FP] + cm[..., FN]
    return np.divide(num, den, out=np.full(np.shape(num), np.nan), where=den > 0)


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


@dataclass(frozen=True)
class Resamples:
    """Resamples of S rats: `counts` (B, S), how often each rat is drawn; `weights` (B,), summing to 1."""

    counts: np.ndarray
    weights: np.ndarray
    exact: bool


def n_distinct_resamples(s: int) -> int:
    """Multisets of size s drawn from s rats: C(2s - 1, s)."""
    return math.comb(2 * s - 1, s) if s else 1


def exact_resamples(s: int) -> Resamples:
    """Every distinct multiset of s rats, weighted by its multinomial probability s!/(prod m_i!) / s^s."""
    counts = np.array([np.bincount(c, minlength=s) for c in combinations_with_replacement(range(s), s)], dtype=int)
    ways = [math.factorial(s) // math.prod(math.factorial(int(m)) for m in row) for row in counts]
    return Resamples(counts, np.array(ways, dtype=float) / s ** s, True)


def random_resamples(s: int, n: int, seed: int) -> Resamples:
    """n ordered draws of s rats with replacement (legacy `RandomState` stream), equally weighted."""
    idx = np.random.RandomState(seed).randint(0, s, size=(n, s))
    counts = np.stack([np.bincount(row, minlength=s) for row in idx]) if n else np.zeros((0, s), dtype=int)
    return Resamples(counts, np.full(n, 1 / n) if n else np.zeros(0), False)


def rat_resamples(s: int, n_random: int = 2000, seed: int = 0, max_exact: int = MAX_EXACT) -> Resamples:
    """All distinct resamples when there are at most `max_exact`, else `n_random` random ones."""
    return exact_resamples(s) if n_distinct_resamples(s) <= max_exact else random_resamples(s, n_random, seed)


def weighted_quantile(values, weights, q: float) -> float:
    """The smallest value whose weighted cumulative share reaches q (the inverse CDF); NaN values are left out."""
    v, w = np.asarray(values, dtype=float), np.asarray(weights, dtype=float)
    ok = ~np.isnan(v)
    v, w = v[ok], w[ok]
    if not len(v) or w.sum() <= 0:
        return float("nan")
    order = np.argsort(v, kind="stable")
    cum = np.cumsum(w[order]) / w.sum()
    i = min(int(np.searchsorted(cum, q - TIE, side="left")), len(v) - 1)
    return float(v[order][i])


def _nanmean(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """Mean over `axis` of the values that are not NaN; NaN where there is none (no warning)."""
    ok = ~np.isnan(x)
    total, n = np.where(ok, x, 0.0).sum(axis=axis), ok.sum(axis=axis)
    return np.divide(total, n, out=np.full(np.shape(total), np.nan), where=n > 0)


def _pooled(cm: np.ndarray, r: Resamples, fn) -> np.ndarray:
    """(B,) seed mean of `fn` of each resample's pooled confusion matrix; `cm` is (K seeds, S, 4)."""
    return _nanmean(fn(np.einsum("bs,ksc->kbc", r.counts, cm)))


def _mean_over_drawn(cm: np.ndarray, r: Resamples, fn) -> np.ndarray:
    """(B,) seed mean of the mean of `fn` over each resample's rats (with multiplicity, where defined)."""
    per = fn(cm)                                          # (K, S)
    defined = ~np.isnan(per)
    total = np.einsum("bs,ks->kb", r.counts, np.where(defined, per, 0.0))
    n = np.einsum("bs,ks->kb", r.counts, defined.astype(float))
    return _nanmean(np.divide(total, n, out=np.full(total.shape, np.nan), where=n > 0))


def bootstrap_over_subjects(per_subject, n_resamples: int = 2000, seed: int = 0, level: float = 0.95,
                            resamples: Resamples | None = None) -> dict[str, Interval]:
    """Percentile intervals of pooled F1, pooled accuracy and the mean of per-subject F1 and accuracy.

    `per_subject`: array (S, 4) of per-subject confusion matrices, or (K, S, 4) for K seeds of one
    configuration; with seeds, each resample's metric is computed for every seed on the same animals and
    averaged over seeds (the interval of the seed-mean, animals resampled jointly). `resamples`: default
    `rat_resamples(S, n_resamples, seed)` (exact when S is small; `n_resamples` and `seed` then unused).
    Returns keys `pooled_f1`, `pooled_accuracy`, `mean_f1`, `mean_accuracy`.
    """
    cm = np.asarray(per_subject, dtype=float)
    if cm.ndim == 2:
        cm = cm[None]
    s = cm.shape[1]
    if s == 0:
        nan = Interval(float("nan"), float("nan"))
        return {key: nan for key in ("pooled_f1", "pooled_accuracy", "mean_f1", "mean_accuracy")}
    r = resamples if resamples is not None else rat_resamples(s, n_resamples, seed)
    alpha = (1 - level) / 2
    out = {}
    for name, fn in METRICS.items():
        for key, stat in ((f"pooled_{name}", _pooled(cm, r, fn)), (f"mean_{name}", _mean_over_drawn(cm, r, fn))):
            out[key] = Interval(weighted_quantile(stat, r.weights, alpha), weighted_quantile(stat, r.weights, 1 - alpha))
    return out


def paired_f1_p(cm_a, cm_b, resamples: Resamples) -> float:
    """Two-sided p-value of "A and B have the same pooled F1" from a paired bootstrap over rats.

    On each resample (the same rats for both rows) d = F1_A - F1_B, each F1 the seed mean of the
    resample's pooled F1; p = min(1, 2 min(P(d <= 0), P(d >= 0))), P weighted by the resamples'
    probabilities; |d| < TIE counts on both sides; resamples where d is undefined are left out.
    `cm_a`, `cm_b`: (S, 4) or (K, S, 4) per-rat confusion matrices over the same rats.
    """
    return paired_p(pooled_f1_statistic(cm_a, resamples), pooled_f1_statistic(cm_b, resamples), resamples)


def pooled_f1_statistic(cms, resamples: Resamples) -> np.ndarray:
    """(B,) seed mean of each resample's pooled F1; `cms`: (S, 4) or (K, S, 4) per-rat confusion matrices."""
    c = np.asarray(cms, dtype=float)
    return _pooled(c[None] if c.ndim == 2 else c, resamples, f1_of)


def paired_p(stat_a, stat_b, resamples: Resamples) -> float:
    """Two-sided p of "A and B have the same statistic" from per-resample values on the same resamples:
    d = A - B, p = min(1, 2 min(P(d <= 0), P(d >= 0))) weighted by the resamples' probabilities; |d| < TIE
    counts on both sides; resamples where d is undefined (NaN) are left out."""
    d = np.asarray(stat_a, dtype=float) - np.asarray(stat_b, dtype=float)
    ok = ~np.isnan(d)
    w, d = resamples.weights[ok], d[ok]
    if w.sum() <= 0:
        return 1.0
    w = w / w.sum()
    return float(min(1.0, 2 * min(w[d <= TIE].sum(), w[d >= -TIE].sum())))


def holm(pvalues) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order: with p sorted ascending,
    adjusted p_(i) = max over j <= i of min(1, (m - j + 1) p_(j))."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order])) if m else p
    out = np.empty(m)
    out[order] = adjusted
    return out.tolist()


class Tier(NamedTuple):
    """A row's tier and its p-values against the tier's best row (None for the best row itself)."""

    tier: int
    p_raw: float | None
    p_holm: float | None


def tiers(rows, resamples: Resamples, alpha: float = 0.05, statistic=pooled_f1_statistic) -> list[Tier]:
    """Tiers of rows given best first. `rows`: what `statistic(row, resamples)` turns into the row's (B,)
    per-resample statistic; by default each row's (S, 4) or (K, S, 4) per-rat confusion matrices and the
    seed mean of the resample's pooled F1 (`paired_f1_p`); the AU board passes per-rat ICC sums and
    `resampled_icc`.

    The best remaining row opens a tier; each other remaining row is compared with it (`paired_p` on the
    same resamples), the p-values Holm-adjusted over these comparisons. Walking down the ranks, rows join
    the tier while their adjusted p >= alpha; the first row separated from the tier's best opens the next
    tier (tiers are contiguous in rank, so a tier never holds a row ranked below one the test put in a
    later tier).
    """
    stat = [statistic(r, resamples) for r in rows]
    out: list[Tier | None] = [None] * len(rows)
    remaining, tier = list(range(len(rows))), 0
    while remaining:
        tier += 1
        best, others = remaining[0], remaining[1:]
        out[best] = Tier(tier, None, None)
        raw = [paired_p(stat[best], stat[i], resamples) for i in others]
        adjusted = holm(raw)
        joining = next((j for j, a in enumerate(adjusted) if a < alpha), len(others))
        for i, p, a in zip(others[:joining], raw, adjusted):
            out[i] = Tier(tier, p, a)
        remaining = others[joining:]
    return out


#: the last axis of ICC sufficient statistics
ICC_SUMS = ("n", "sx", "sy", "sxx", "syy", "sxy")


def icc_sums(x, y) -> np.ndarray:
    """(6,) sufficient statistics of paired values (n, sum x, sum y, sum x^2, sum y^2, sum xy); NaN pairs left out."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = ~np.isnan(x) & ~np.isnan(y)
    x, y = x[ok], y[ok]
    return np.array([len(x), x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum()], dtype=float)


def icc_from_sums(sums) -> np.ndarray:
    """ICC(A,1) (McGraw & Wong, two raters: x and y) over the last axis of sufficient statistics, vectorised;
    NaN where undefined (n < 2, or every value equal), as `metrics_au.icc_a1` returns None.

    With g the grand mean: SST = Sxx + Syy - 2n g^2, SSR = (Sxx + 2Sxy + Syy)/2 - 2n g^2 (targets),
    SSC = (Sx - Sy)^2 / (2n) (raters), SSE = SST - SSR - SSC; MSR = SSR/(n-1), MSC = SSC, MSE = SSE/(n-1);
    ICC = (MSR - MSE) / (MSR + MSE + 2 (MSC - MSE) / n)."""
    s = np.asarray(sums, dtype=float)
    n, sx, sy, sxx, syy, sxy = (s[..., i] for i in range(6))
    with np.errstate(divide="ignore", invalid="ignore"):
        g = (sx + sy) / (2 * n)
        sst = sxx + syy - 2 * n * g * g
        ssr = (sxx + 2 * sxy + syy) / 2 - 2 * n * g * g
        ssc = (sx - sy) ** 2 / (2 * n)
        msr, mse = ssr / (n - 1), (sst - ssr - ssc) / (n - 1)
        den = msr + mse + 2 * (ssc - mse) / n
        icc = (msr - mse) / den
    scale = np.maximum(sxx + syy, 1.0)
    ok = (n >= 2) & (sst > 1e-12 * scale) & (np.abs(den) > 0)
    return np.where(ok, icc, np.nan)


def resampled_icc(sums, resamples: Resamples) -> np.ndarray:
    """(B,) seed mean of each resample's ICC(A,1); `sums`: per-rat sufficient statistics (S, 6) or (K seeds, S, 6)."""
    s = np.asarray(sums, dtype=float)
    s = s[None] if s.ndim == 2 else s
    return _nanmean(icc_from_sums(np.einsum("bs,ksc->kbc", resamples.counts, s)))


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
