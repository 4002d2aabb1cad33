"""Action-unit metrics: the four RGS grades (0/1/2) of each test image against the raters' consensus.

Per AU, over the images whose consensus grade is not blank: accuracy, macro F1 (over the grades present
in y_true or y_pred, as scikit-learn's default) and quadratic-weighted Cohen's kappa (QWK). The image RGS
score (mean of the predicted AUs, `tasks.rgs_score`) against the consensus score (mean of the accepted
AUs): ICC(A,1), Pearson r and MAE. `human_ceiling` gives the raters' own agreement as a reference.

A value that is undefined (no image; kappa or ICC with no variance at all; r when one side is constant)
is None, never a fake 0. Everything returned is JSON-safe (float, int, None, str, dict, list).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .tasks import AUS, BLANK, rgs_score

ICC_FORM = ("ICC(A,1): McGraw & Wong two-way random effects, absolute agreement, single measure "
            "(= Shrout & Fleiss ICC(2,1))")
STAGE_ONE = 5  # the first five raters (in column order) grade every AU: stage one of the two-stage rule


def _f(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _mean(values) -> float | None:
    """Mean of the defined values (None ones are skipped); None when none is defined."""
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def as_grades(values) -> np.ndarray:
    """Grades as floats, NaN for a blank (NaN, None, pd.NA or `BLANK`); anything but 0/1/2 is an error."""
    raw = pd.Series(values, dtype=object)
    g = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    if (np.isnan(g) & raw.notna().to_numpy()).any() or not np.isin(g[~np.isnan(g) & (g != BLANK)], (0, 1, 2)).all():
        raise ValueError("AU grades must be 0, 1, 2 or blank")
    return np.where(g == BLANK, np.nan, g)


# --- per AU: paired grades, blanks already left out -------------------------------------------------------

def accuracy(y_true, y_pred) -> float | None:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(t == p)) if len(t) else None


def macro_f1(y_true, y_pred) -> float | None:
    """Unweighted mean over the grades present in y_true or y_pred of 2TP / (2TP + FP + FN)."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if not len(t):
        return None
    f = [2 * np.sum((t == c) & (p == c)) / (np.sum(t == c) + np.sum(p == c)) for c in np.union1d(t, p)]
    return float(np.mean(f))


def qwk(y_true, y_pred) -> float | None:
    """Quadratic-weighted Cohen's kappa, weights (i - j)^2 over the sorted grades present (as scikit-learn).
    None when undefined: no image, or both sides hold the same single grade (0/0). When only one side is
    constant the observed table equals the chance table and kappa is 0 (as scikit-learn)."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if not len(t):
        return None
    labels = np.union1d(t, p)
    k = len(labels)
    obs = np.zeros((k, k))
    np.add.at(obs, (np.searchsorted(labels, t), np.searchsorted(labels, p)), 1)
    exp = np.outer(obs.sum(1), obs.sum(0)) / obs.sum()
    w = (np.arange(k)[:, None] - np.arange(k)[None, :]) ** 2
    d = np.sum(w * exp)
    return _f(1 - np.sum(w * obs) / d) if d > 0 else None


def au_block(y_true, y_pred) -> dict:
    """{accuracy, macro_f1, qwk, n} of one AU; images whose consensus (or prediction) is blank are left out."""
    t, p = as_grades(y_true), as_grades(y_pred)
    m = ~np.isnan(t) & ~np.isnan(p)
    t, p = t[m].astype(int), p[m].astype(int)
    return {"accuracy": accuracy(t, p), "macro_f1": macro_f1(t, p), "qwk": qwk(t, p), "n": int(m.sum())}


# --- RGS score: continuous ---------------------------------------------------------------------------------

def icc_a1(ratings) -> float | None:
    """ICC(A,1) of (n targets, k raters) without missing values: McGraw & Wong's two-way random effects,
    absolute agreement, single measure (= Shrout & Fleiss ICC(2,1)),
    (MSR - MSE) / (MSR + (k-1) MSE + k (MSC - MSE) / n). None when n < 2, k < 2 or all values are equal."""
    y = np.asarray(ratings, dtype=float)
    n, k = y.shape
    if n < 2 or k < 2 or np.ptp(y) == 0:
        return None
    g = y.mean()
    ssr = k * np.sum((y.mean(1) - g) ** 2)
    ssc = n * np.sum((y.mean(0) - g) ** 2)
    sse = np.sum((y - g) ** 2) - ssr - ssc
    msr, msc, mse = ssr / (n - 1), ssc / (k - 1), sse / ((n - 1) * (k - 1))
    return _f((msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n))


def pearson_r(x, y) -> float | None:
    """Pearson's r; None when n < 2 or either side is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    dx, dy = x - x.mean(), y - y.mean()
    return _f(np.clip(np.sum(dx * dy) / np.sqrt(np.sum(dx ** 2) * np.sum(dy ** 2)), -1, 1))


def rgs_block(score, truth) -> dict:
    """{icc_a1, pearson_r, mae, n} of image scores against the consensus scores (NaN pairs left out)."""
    s, t = np.asarray(score, dtype=float), np.asarray(truth, dtype=float)
    m = ~np.isnan(s) & ~np.isnan(t)
    s, t = s[m], t[m]
    return {"icc_a1": icc_a1(np.column_stack([s, t])), "pearson_r": pearson_r(s, t),
            "mae": float(np.mean(np.abs(s - t))) if len(s) else None, "n": int(m.sum())}


# --- inter-rater agreement ---------------------------------------------------------------------------------

def krippendorff_alpha(data, level: str = "ordinal") -> float | None:
    """Krippendorff's alpha of (raters, units) data, NaN for missing, from the coincidence matrix.
    `level`: nominal, ordinal (rank distance from the pairable value counts) or interval. Units with fewer
    than two values are dropped; None when no unit is left or only one value occurs (expected disagreement 0)."""
    d = np.asarray(data, dtype=float)
    d = d[:, np.sum(~np.isnan(d), axis=0) >= 2]
    values = np.unique(d[~np.isnan(d)])
    if len(values) < 2:
        return None
    counts = np.zeros((d.shape[1], len(values)))  # units x values
    rater, unit = np.nonzero(~np.isnan(d))
    np.add.at(counts, (unit, np.searchsorted(values, d[rater, unit])), 1)
    w = counts / (counts.sum(1, keepdims=True) - 1)
    coinc = w.T @ counts - np.diag(w.sum(0))  # o_ck: pairs of values within a unit, each weighted 1/(m_u - 1)
    n_c = coinc.sum(1)
    if level == "nominal":
        delta2 = 1.0 - np.eye(len(values))
    elif level == "ordinal":
        mid = np.cumsum(n_c) - n_c / 2  # delta_ck = sum of n_g for g from c to k, minus (n_c + n_k) / 2
        delta2 = (mid[:, None] - mid[None, :]) ** 2
    elif level == "interval":
        delta2 = (values[:, None] - values[None, :]) ** 2
    else:
        raise ValueError(f"level must be nominal, ordinal or interval, not {level!r}")
    expected = np.sum(np.outer(n_c, n_c) * delta2)
    return _f(1 - (n_c.sum() - 1) * np.sum(coinc * delta2) / expected) if expected > 0 else None


# --- frames --------------------------------------------------------------------------------------------------

def _per_subject(frame: pd.DataFrame, block) -> dict:
    from .data.dataset import sort_subjects

    subjects = frame["subject"].astype(str).to_numpy()
    return {s: block(frame[subjects == s]) for s in sort_subjects(set(subjects))}


def _mean_over_subjects(per: dict) -> dict:
    """Mean over subjects of QWK per AU and of ICC(A,1); subjects where it is undefined are skipped
    (`n_defined` says how many counted), None when it is undefined for every subject."""
    qwks = {a: [p["au"][a]["qwk"] for p in per.values()] for a in AUS}
    iccs = [p["rgs"]["icc_a1"] for p in per.values()]
    return {"qwk": {a: _mean(v) for a, v in qwks.items()}, "icc_a1": _mean(iccs),
            "n_defined": {"qwk": {a: sum(x is not None for x in v) for a, v in qwks.items()},
                          "icc_a1": sum(x is not None for x in iccs)}}


def frame_grades(frame: pd.DataFrame, side: str) -> np.ndarray:
    """(N, 4) grades of a predictions frame's `y_<side>_au_<name>` columns in `AUS` order, NaN where blank."""
    return np.column_stack([as_grades(frame[f"y_{side}_au_{a}"]) for a in AUS])


def _prediction_block(frame: pd.DataFrame) -> dict:
    truth, pred = frame_grades(frame, "true"), frame_grades(frame, "pred")
    if np.isnan(pred).any():
        raise ValueError("every y_pred_au_<name> must hold a grade 0/1/2")
    return {"au": {a: au_block(truth[:, j], pred[:, j]) for j, a in enumerate(AUS)},
            "rgs": rgs_block(rgs_score(pred), rgs_score(truth))}


def score_au(frame: pd.DataFrame) -> dict:
    """Scores of an AU-task predictions frame (`subject`, `y_true_au_<name>`, `y_pred_au_<name>`):
    {"n", "icc_form", "au": {name: {accuracy, macro_f1, qwk, n}}, "rgs": {icc_a1, pearson_r, mae, n}}
    pooled over all rows, "per_subject": {subject: {"au", "rgs"}} and "mean_over_subjects"
    ({"qwk": {name}, "icc_a1", "n_defined"}: undefined subjects skipped)."""
    need = ["subject"] + [f"y_{s}_au_{a}" for a in AUS for s in ("true", "pred")]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise ValueError(f"predictions frame lacks {missing}")
    per = _per_subject(frame, _prediction_block)
    return {"n": int(len(frame)), "icc_form": ICC_FORM, **_prediction_block(frame), "per_subject": per,
            "mean_over_subjects": _mean_over_subjects(per)}


def _ceiling_block(table: pd.DataFrame, raters: dict, stage_one: list) -> dict:
    n = len(table)
    blank = np.full(n, np.nan)
    grade = {r: {a: as_grades(table[cols[a]]) if a in cols else blank for a in AUS} for r, cols in raters.items()}
    truth = {a: as_grades(table[f"au_{a}"]) for a in AUS}
    au = {}
    for a in AUS:
        single = [au_block(truth[a], grade[r][a]) for r in stage_one]
        au[a] = {"alpha": krippendorff_alpha(np.array([grade[r][a] for r in raters]).reshape(-1, n), "ordinal"),
                 "qwk": _mean(b["qwk"] for b in single), "accuracy": _mean(b["accuracy"] for b in single),
                 "n": int(np.sum(~np.isnan(truth[a])))}
    consensus = rgs_score(np.column_stack([truth[a] for a in AUS]))
    single = [rgs_block(rgs_score(np.column_stack([grade[r][a] for a in AUS])), consensus) for r in stage_one]
    rgs = {k: _mean(b[k] for b in single) for k in ("icc_a1", "pearson_r", "mae")}
    return {"au": au, "rgs": {**rgs, "n": int(np.sum(~np.isnan(consensus)))}}


def human_ceiling(table: pd.DataFrame, stage_one: int = STAGE_ONE) -> dict | None:
    """Inter-rater agreement of a dataset table with `rater_<id>_au_<name>` columns, as a reference for
    `score_au`; None when the table has no rater column.

    Per AU: Krippendorff's alpha (ordinal) over all raters, and the mean over the stage-one raters (the
    first `stage_one` raters in column order, `data.raters.rater_columns`) of a single rater's QWK and accuracy against the consensus `au_<name>`. RGS: a
    single stage-one rater's image score (mean of the AUs that rater graded) against the consensus score,
    ICC(A,1), Pearson r and MAE averaged over those raters (undefined ones skipped). "n" counts the images
    with a consensus. Each rater is part of the consensus, so this ceiling is optimistic.
    Returns {"raters", "stage_one", "icc_form", "au": {name: {alpha, qwk, accuracy, n}},
    "rgs": {icc_a1, pearson_r, mae, n}} pooled, "per_subject": {subject: {"au", "rgs"}}, "mean_over_subjects"."""
    from .data.raters import rater_columns

    raters = rater_columns(table.columns)
    if not raters:
        return None
    first = list(raters)[:stage_one]
    missing = [f"au_{a}" for a in AUS if f"au_{a}" not in table.columns] + (["subject"] if "subject" not in table else [])
    if missing:
        raise ValueError(f"table lacks {missing}")
    per = _per_subject(table, lambda t: _ceiling_block(t, raters, first))
    return {"raters": list(raters), "stage_one": first, "icc_form": ICC_FORM,
            **_ceiling_block(table, raters, first), "per_subject": per, "mean_over_subjects": _mean_over_subjects(per)}
