"""The two tasks a method can be scored on, and the Rat Grimace Scale rules they share.

- `binary` (the paper's Table 3, the default): pain (image level >= 1) or not, per test image.
- `au`: the four action-unit grades 0/1/2 of every test image (orbital tightening, nose/cheek
  flattening, ear changes, whisker changes), under the same LORO protocol. The image's binary label is
  then *derived* from the predicted grades the paper's way (section "Explanation of pain levels": the
  level is the rounded mean of the AU scores, pain when it is at least 1), so AU methods are also scored
  on Table 3's terms.

Grades are ints 0/1/2; a blank (the raters gave no accepted grade) is `BLANK` (-1) in arrays.
"""
from __future__ import annotations

import numpy as np

TASKS = ("binary", "au")
AUS = ("orbital", "nose", "ears", "whiskers")
GRADES = (0, 1, 2)
BLANK = -1


def au_column(au: str) -> str:
    """The manifest column of an AU's consensus grade (`au_orbital`, ...)."""
    return f"au_{au}"


def round_half_up(x) -> np.ndarray | int:
    """The paper's rounding of a mean score: 0.5 -> 1 and 1.5 -> 2 (never banker's rounding)."""
    r = np.floor(np.asarray(x, dtype=float) + 0.5 + 1e-9).astype(int)
    return int(r) if r.ndim == 0 else r


def rgs_score(grades: np.ndarray) -> np.ndarray:
    """The image's RGS score: the mean of its graded AUs, (N, A) with `BLANK` (or NaN) ignored; NaN when none is graded."""
    g = np.asarray(grades, dtype=float)
    g = np.where(g == BLANK, np.nan, g)
    with np.errstate(invalid="ignore"):
        n = np.sum(~np.isnan(g), axis=1)
        return np.where(n > 0, np.nansum(g, axis=1) / np.maximum(n, 1), np.nan)


def level_of(grades: np.ndarray) -> np.ndarray:
    """Image level 0/1/2: the rounded (half up) mean of the graded AUs; `BLANK` where no AU is graded."""
    s = rgs_score(grades)
    return np.where(np.isnan(s), BLANK, round_half_up(np.nan_to_num(s)))


def derived_label(grades: np.ndarray) -> np.ndarray:
    """Binary pain label from AU grades (N, A): level >= 1 (0 where no AU is graded)."""
    return (level_of(grades) >= 1).astype(int)


def by_au(values: np.ndarray) -> dict[str, np.ndarray]:
    """(N, 4, ...) in `AUS` order -> {au: (N, ...)}; the inverse of `grades_matrix`."""
    return {a: values[:, j] for j, a in enumerate(AUS)}


def grades_matrix(au: dict[str, np.ndarray]) -> np.ndarray:
    """{au: (N,) grades} -> (N, 4) in `AUS` order (a missing AU is all `BLANK`)."""
    n = len(next(iter(au.values()))) if au else 0
    return np.stack([np.asarray(au.get(a, np.full(n, BLANK)), dtype=int) for a in AUS], axis=1) if n else np.zeros((0, len(AUS)), int)


def pain_probability(proba: np.ndarray) -> np.ndarray:
    """P(derived label = pain) from per-AU grade probabilities (N, A, 3), the AUs taken as independent:
    pain when the sum of the A grades is at least A / 2 (rounded mean >= 1). The sum's distribution is
    the convolution of the A per-AU distributions."""
    p = np.asarray(proba, dtype=float)
    n, a, _ = p.shape
    dist = np.zeros((n, 2 * a + 1))
    dist[:, 0] = 1.0
    for j in range(a):
        new = np.zeros_like(dist)
        for g in GRADES:
            new[:, g:] += dist[:, :dist.shape[1] - g] * p[:, j, g:g + 1]
        dist = new
    need = int(np.ceil(a / 2 - 1e-9))
    return np.clip(dist[:, need:].sum(axis=1), 0.0, 1.0)
