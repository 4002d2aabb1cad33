"""`results.csv` and `results.json`: the leaderboard as data, one row per (dataset, configuration, seed set)."""
from __future__ import annotations

import csv
import io
import math

from . import paper, stats
from .table import MARKER, RANK_BY, SIGNIFICANCE, Leaderboard, Row

DEFINITIONS = {
    "f1": "F1 of the pain class (positive = pain = 1)",
    "accuracy": "fraction of images classified correctly, in [0, 1] (tables print it x100)",
    "pooled": "one confusion matrix summed over all LORO folds (the paper's LORO column)",
    "mean_over_subjects": "unweighted mean over rats of the per-rat F1 and accuracy; F1 over the rats where it is defined",
    "undefined_f1": "a rat with no pain image and no pain prediction has no F1 (0/0): null in JSON, an empty cell in CSV",
    "ranking": (f"by {RANK_BY} (the paper's headline metric), ties by pooled accuracy; only each method's registered configuration "
                "(the registry's configuration for the row's profile with no overrides) is ranked; incomplete rows, baselines and "
                "exploratory rows are not ranked"),
    "exploratory": ("kind exploratory: a configuration other than the method's registered one (--set, --weights), or a method no "
                    "longer registered; never ranked (choosing among configurations on the test rats would tune on them); note says why"),
    "tier": ("ranked rows the data cannot separate: the top row opens tier 1; each other ranked row is compared with it by a "
             "paired bootstrap over rats of the difference d in pooled F1 (the resamples of `bootstrap`, the same rats for both "
             "rows), two-sided p = min(1, 2 min(P(d <= 0), P(d >= 0))) weighted by the resamples' probabilities, Holm-adjusted "
             f"over the comparisons with that row; walking down the ranks, rows join the tier while adjusted p >= {SIGNIFICANCE}; "
             "the first row separated opens the next tier (tiers are contiguous in rank). tier_p: the Holm-adjusted p against "
             "the tier's best row (tier_p_raw before adjustment); empty for that row"),
    "seeds": "several seeds of one configuration: mean and sample standard deviation (ddof=1) over seeds, never the best seed",
    "ci": ("95% weighted percentile bootstrap over rats: whole animals resampled with replacement, their confusion matrices summed; "
           "every distinct resample (multiset of rats) weighted by its multinomial probability when there are at most "
           f"{stats.MAX_EXACT}, else n_resamples random ones; the percentile is the inverse of the weighted distribution function"),
    "mcnemar": (f"McNemar's exact two-sided binomial test on the images both rows scored, against the top-ranked row; "
                f"b = images only this row gets right, c = images only the top row gets right; {MARKER} marks p < {SIGNIFICANCE}; "
                "with several seeds, seeds are paired and the largest p-value is kept"),
    "majority_baseline": "each fold predicts the majority class of its training rats (a tie predicts no pain)",
    "chance_baseline": "each image called pain with probability 1/2: accuracy and balanced accuracy 1/2, MCC 0, F1 its exact expectation "
                       "E[2TP/(TP+FP+P)] with TP~Bin(P,1/2), FP~Bin(N,1/2) (about 2p/(1+2p), p the pain share)",
}


def _num(x, digits: int = 6):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return round(float(x), digits)


def row_json(row: Row) -> dict:
    return {
        "rank": row.rank, "kind": row.kind, "status": "complete", "label": row.label, "method": row.method,
        "family": row.family, "source": row.source, "profile": row.profile, "config_hash": row.config_hash, "code_hash": row.code_hash,
        "seeds": list(row.seeds),
        "pooled": {k: _num(v) for k, v in row.pooled.items()},
        "pooled_std": {k: _num(v) for k, v in row.pooled_std.items()},
        "confusion": {k: _num(v, 3) for k, v in row.confusion.items()},
        "per_subject": {s: {"f1": _num(v["f1"]), "accuracy": _num(v["accuracy"]), "n": v["n"]} for s, v in row.per_subject.items()},
        "mean_over_subjects": {k: _num(v) for k, v in row.mean_over_subjects.items()},
        "mean_over_subjects_std": {k: _num(v) for k, v in row.mean_over_subjects_std.items()},
        "ci95": {k: [_num(lo), _num(hi)] for k, (lo, hi) in row.ci.items()},
        "mcnemar_vs_top": (None if row.mcnemar is None else {**row.mcnemar, "p_value": _num(row.mcnemar["p_value"], 8),
                                                              "significant": row.significant}),
        "tier": row.tier, "tier_p": _num(row.tier_p, 8), "tier_p_raw": _num(row.tier_p_raw, 8),
        "train_seconds": _num(row.train_seconds, 3), "hardware": row.hardware,
        "mlflow": {"experiment_id": row.experiment_id, "run_ids": list(row.run_ids), "urls": list(row.run_urls)},
        "note": row.note,
    }


def leaderboard_json(lb: Leaderboard) -> dict:
    return {
        "dataset": lb.dataset, "dataset_fingerprint": lb.fingerprint, "subjects": list(lb.subjects), "n_images": lb.n_images,
        "tracking_uri": lb.tracking_uri, "mlflow_ui_command": lb.ui_command,
        "bootstrap": {"unit": "subject", "n_resamples": lb.n_resamples, "seed": lb.bootstrap_seed, "level": 0.95,
                      "exact": lb.bootstrap_exact, "distinct_resamples": lb.distinct_resamples},
        "rows": [row_json(r) for r in lb.rows],
        "incomplete": [{"label": r.label, "method": r.method, "status": "incomplete", "seeds": list(r.seeds),
                        "folds_complete": r.folds, "reasons": list(r.reasons), "source": r.source,
                        "mlflow": {"run_ids": list(r.run_ids), "urls": list(r.run_urls)}} for r in lb.incomplete],
        "imbalance": [{k: (_num(v) if isinstance(v, float) else v) for k, v in d.items()} for d in lb.imbalance],
        "reference": ({"source": paper.SOURCE, "note": "reported in the paper, not reproduced here; never ranked. " + paper.NOTE,
                       "rows": list(lb.reference)} if lb.reference else None),
        "warnings": list(lb.warnings),
    }


def results_json(leaderboards) -> dict:
    return {"schema": 1, "definitions": DEFINITIONS, "leaderboards": [leaderboard_json(lb) for lb in leaderboards]}


def _fmt(x) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return "" if math.isnan(x) else f"{x:.6f}"
    return str(x)


def csv_rows(lb: Leaderboard, subjects=None) -> list[dict]:
    """Flat rows: every complete configuration, the baselines, then the incomplete ones (metrics blank)."""
    subjects = list(lb.subjects if subjects is None else subjects)
    out = []
    for r in lb.rows:
        d = {"dataset": lb.dataset, "dataset_fingerprint": lb.fingerprint, "rank": r.rank, "kind": r.kind, "status": "complete",
             "label": r.label, "method": r.method, "family": r.family, "source": r.source, "profile": r.profile,
             "config_hash": r.config_hash, "code_hash": r.code_hash, "seeds": ";".join(r.seeds), "n_seeds": len(r.seeds), "n_images": lb.n_images,
             "n_subjects": len(lb.subjects)}
        for k in ("f1", "accuracy", "balanced_accuracy", "mcc"):
            d[f"pooled_{k}"] = r.pooled[k]
            d[f"pooled_{k}_std"] = r.pooled_std.get(k)
            if f"pooled_{k}" in ("pooled_f1", "pooled_accuracy"):
                lo, hi = r.ci.get(f"pooled_{k}", (None, None))
                d[f"pooled_{k}_ci_low"], d[f"pooled_{k}_ci_high"] = lo, hi
        for k in ("f1", "accuracy"):
            d[f"mean_{k}"] = r.mean_over_subjects[k]
            d[f"mean_{k}_std"] = r.mean_over_subjects_std.get(k)
            lo, hi = r.ci.get(f"mean_{k}", (None, None))
            d[f"mean_{k}_ci_low"], d[f"mean_{k}_ci_high"] = lo, hi
        for k in ("tp", "fp", "fn", "tn"):
            d[k] = r.confusion[k]
        for s in subjects:
            v = r.per_subject.get(s)
            d[f"f1_rat{s}"] = v["f1"] if v else None
            d[f"accuracy_rat{s}"] = v["accuracy"] if v else None
        m = r.mcnemar or {}
        d.update({"mcnemar_b": m.get("b"), "mcnemar_c": m.get("c"), "mcnemar_n_shared": m.get("n_shared"),
                  "mcnemar_p": m.get("p_value"), "significant_vs_top": (r.significant if r.mcnemar else None),
                  "train_seconds": r.train_seconds, "hardware": r.hardware, "mlflow_experiment_id": r.experiment_id,
                  "mlflow_run_ids": ";".join(r.run_ids), "folds_complete": "", "note": r.note,
                  "tier": r.tier, "tier_p": r.tier_p, "tier_p_raw": r.tier_p_raw})
        out.append(d)
    for r in lb.incomplete:
        out.append({"dataset": lb.dataset, "dataset_fingerprint": lb.fingerprint, "kind": "method", "status": "incomplete",
                    "label": r.label, "method": r.method, "source": r.source, "seeds": ";".join(r.seeds), "n_seeds": len(r.seeds),
                    "mlflow_run_ids": ";".join(r.run_ids), "folds_complete": r.folds, "note": "; ".join(r.reasons)})
    return out


def results_csv(leaderboards) -> str:
    """One CSV for one or several leaderboards (per-rat columns are the union, blank where a rat is absent)."""
    subjects_all = []
    for lb in leaderboards:
        subjects_all += [s for s in lb.subjects if s not in subjects_all]
    rows = []
    for lb in leaderboards:
        rows += csv_rows(lb, subjects_all if len(leaderboards) > 1 else None)
    columns = []
    for r in rows:
        columns += [c for c in r if c not in columns]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: _fmt(r.get(c)) for c in columns})
    return buf.getvalue()
