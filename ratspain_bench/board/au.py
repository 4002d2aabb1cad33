"""The au task's leaderboard figures: per row the pooled AU agreement (`metrics_au.score_au`), the per-rat
ICC sufficient statistics its tiers and interval are resampled from, and the raters' own agreement (the
`ceiling_*` metrics of the board's runs).

A row's AU figures are seed means (sample std over seeds where there are several; undefined values skipped);
the RGS score of an image is the mean of its graded AUs (`tasks.rgs_score`), the consensus score the mean of
the accepted consensus grades; images with no consensus grade at all are left out of the RGS figures.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import metrics_au
from ..tasks import AUS, GRADES, rgs_score
from . import stats

TASK = "au"
CEILING_LABEL = "raters (human ceiling, not ranked)"
CEILING_NOTE = ("each rater is part of the consensus, so the raters' agreement with it is optimistic: a reference, "
                "never ranked")
AU_KEYS = ("qwk", "accuracy", "macro_f1")
RGS_KEYS = ("icc_a1", "pearson_r", "mae")
CEILING_AU_KEYS = ("alpha", "qwk", "accuracy")
COLUMNS = tuple(f"y_{s}_au_{a}" for a in AUS for s in ("true", "pred"))


def missing_columns(frame: pd.DataFrame | None) -> str:
    """Why an au-task predictions frame cannot be scored on the AUs ("" when it can)."""
    if frame is None:
        return ""
    missing = [c for c in COLUMNS if c not in frame.columns]
    return f"predictions lack {', '.join(missing)}" if missing else ""


def scores(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and consensus RGS scores of every image (NaN where no AU is graded)."""
    return rgs_score(metrics_au.frame_grades(frame, "pred")), rgs_score(metrics_au.frame_grades(frame, "true"))


def rat_sums(frame: pd.DataFrame, subjects) -> np.ndarray:
    """(S, 6) ICC sufficient statistics (`stats.icc_sums`) of each rat's (predicted, consensus) RGS scores."""
    pred, truth = scores(frame)
    subject = frame["subject"].astype(str).to_numpy()
    return np.stack([stats.icc_sums(pred[subject == s], truth[subject == s]) for s in subjects])


def confusion_3x3(frame: pd.DataFrame) -> dict:
    """{au: 3x3 counts} (rows: consensus grade 0/1/2, columns: predicted), images with a blank left out."""
    t, p = metrics_au.frame_grades(frame, "true"), metrics_au.frame_grades(frame, "pred")
    out = {}
    for j, a in enumerate(AUS):
        ok = ~np.isnan(t[:, j]) & ~np.isnan(p[:, j])
        m = np.zeros((len(GRADES), len(GRADES)))
        np.add.at(m, (t[ok, j].astype(int), p[ok, j].astype(int)), 1)
        out[a] = m
    return out


def _mean_std(values) -> tuple[float | None, float | None]:
    kept = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not kept:
        return None, None
    return stats.mean_std(kept)


def row_block(frames: list[pd.DataFrame], subjects, resamples: stats.Resamples) -> tuple[dict, np.ndarray]:
    """A row's AU figures from its seeds' predictions frames, and its per-rat ICC sums (K seeds, S, 6).

    Keys: `qwk`, `accuracy`, `macro_f1` ({au: seed mean}) and their `<key>_std`; `rgs` ({icc_a1, pearson_r,
    mae}) and `rgs_std`; `icc_ci` (95% weighted percentile bootstrap over rats of the seed-mean ICC(A,1));
    `n` ({au: images with a consensus grade, "rgs": images with a consensus score}); `confusion` ({au: 3x3,
    seed mean}); `bland_altman` ({"pred", "truth"}: per image, the seed mean of the predicted score and the
    consensus score, images with a consensus score)."""
    scored = [metrics_au.score_au(f) for f in frames]
    out: dict = {}
    for k in AU_KEYS:
        pairs = {a: _mean_std([s["au"][a][k] for s in scored]) for a in AUS}
        out[k] = {a: v[0] for a, v in pairs.items()}
        out[f"{k}_std"] = {a: v[1] for a, v in pairs.items()}
    pairs = {k: _mean_std([s["rgs"][k] for s in scored]) for k in RGS_KEYS}
    out["rgs"] = {k: v[0] for k, v in pairs.items()}
    out["rgs_std"] = {k: v[1] for k, v in pairs.items()}
    out["n"] = {**{a: scored[0]["au"][a]["n"] for a in AUS}, "rgs": scored[0]["rgs"]["n"]}
    sums = np.stack([rat_sums(f, subjects) for f in frames])
    per = stats.resampled_icc(sums, resamples)
    out["icc_ci"] = (stats.weighted_quantile(per, resamples.weights, 0.025), stats.weighted_quantile(per, resamples.weights, 0.975))
    cms = [confusion_3x3(f) for f in frames]
    out["confusion"] = {a: np.mean([c[a] for c in cms], axis=0).tolist() for a in AUS}
    each = []
    for f in frames:
        pred, truth = scores(f)
        each.append(pd.DataFrame({"image": f["image"].to_numpy(), "pred": pred, "truth": truth}))
    both = pd.concat(each).groupby("image", sort=True).mean().dropna()
    out["bland_altman"] = {"pred": tuple(both["pred"].tolist()), "truth": tuple(both["truth"].tolist())}
    return out, sums


def order_key(row) -> tuple:
    """The AU board's order: pooled RGS ICC(A,1) descending (undefined last), then derived pooled F1, then label."""
    icc = row.au.get("rgs", {}).get("icc_a1")
    return (math.inf if icc is None else -icc, -row.pooled["f1"], row.label)


def ceiling(records) -> dict | None:
    """The raters' agreement from the `ceiling_*` metrics of the board's runs (complete runs first, then the
    latest); None when no run has them. {"au": {au: {alpha, qwk, accuracy}}, "rgs": {icc_a1, pearson_r, mae}}."""
    for r in sorted(records, key=lambda r: (r.status != "complete", -r.start_time, r.run_id)):
        m = r.metrics or {}
        if any(str(k).startswith("ceiling_") for k in m):
            return {"au": {a: {k: _num(m.get(f"ceiling_au_{a}_{k}")) for k in CEILING_AU_KEYS} for a in AUS},
                    "rgs": {k: _num(m.get(f"ceiling_rgs_{k}")) for k in RGS_KEYS}}
    return None


def _num(x) -> float | None:
    return None if x is None or not np.isfinite(float(x)) else float(x)
