"""`results.csv` and `results.json`: the leaderboard as data, one row per (dataset, task, configuration, seed set).

The au task's rows carry their AU figures (`au_<name>_{qwk,accuracy,macro_f1}`, `rgs_{icc_a1,pearson_r,mae}`,
`rgs_icc_a1_ci_low/high`) and the board's human-ceiling reference row (kind `human-ceiling`); a `task` column
is added to the CSV when any of its leaderboards is not binary (a binary-only CSV keeps its columns). In JSON
every leaderboard and row has a `task` key, au rows an `au` object and au boards a `human_ceiling` object."""
from __future__ import annotations

import csv
import io
import math

from ..tasks import AUS
from . import au, paper, stats
from .table import MARKER, RANK_BY, SIGNIFICANCE, Leaderboard, Row

DEFINITIONS = {
    "f1": "F1 of the pain class (positive = pain = 1)",
    "accuracy": "fraction of images classified correctly, in [0, 1] (tables print it x100)",
    "pooled": "one confusion matrix summed over all LORO folds (the paper's LORO column)",
    "mean_over_subjects": "unweighted mean over rats of the per-rat F1 and accuracy; F1 over the rats where it is defined",
    "undefined_f1": "a rat with no pain image and no pain prediction has no F1 (0/0): null in JSON, an empty cell in CSV",
    "ranking": (f"by {RANK_BY} (the paper's headline metric), ties by pooled accuracy; only each method's registered configuration "
                "(the registry's configuration for the row's profile with no overrides) is ranked; incomplete rows, baselines and "
                "exploratory and unranked rows are not ranked"),
    "exploratory": ("kind exploratory: a configuration other than the method's registered one (--set, --weights), or a method no "
                    "longer registered; never ranked (choosing among configurations on the test rats would tune on them); note says why"),
    "unranked": ("kind unranked: outside code run under bubblewrap or unsandboxed (tag ratspain.sandbox bwrap or none: its "
                 "workers shared the host's kernel), or on a dataset whose labels anyone can recompute (the built-in replica, a "
                 "replica whose seed is known; tag ratspain.labels_public not false): never ranked; note says why"),
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
    "au_task": ("boards of task au: the binary cells are the label derived from the predicted AU grades (rounded mean >= 1); "
                "ranked by pooled RGS ICC(A,1) (McGraw & Wong, absolute agreement, single measure; predicted mean of the "
                "AUs vs the consensus score), ties by derived pooled F1; tiers as `tier` on the paired bootstrap over rats "
                "of the ICC(A,1) difference; per-AU QWK is quadratic-weighted kappa against the consensus grade"),
    "human_ceiling": ("au boards: the raters' own agreement (a single stage-one rater vs the consensus: QWK, accuracy, RGS "
                      "ICC/r/MAE; Krippendorff's alpha over all raters); " + au.CEILING_NOTE),
    "chance_baseline": "each image called pain with probability 1/2: accuracy and balanced accuracy 1/2, MCC 0, F1 its exact expectation "
                       "E[2TP/(TP+FP+P)] with TP~Bin(P,1/2), FP~Bin(N,1/2) (about 2p/(1+2p), p the pain share)",
}


def _num(x, digits: int = 6):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return round(float(x), digits)


def _au_json(row: Row) -> dict:
    a = row.au
    return {"qwk": {k: _num(v) for k, v in a["qwk"].items()}, "qwk_std": {k: _num(v) for k, v in a["qwk_std"].items()},
            "accuracy": {k: _num(v) for k, v in a["accuracy"].items()}, "macro_f1": {k: _num(v) for k, v in a["macro_f1"].items()},
            "rgs": {k: _num(v) for k, v in a["rgs"].items()}, "rgs_std": {k: _num(v) for k, v in a["rgs_std"].items()},
            "rgs_icc_a1_ci95": [_num(x) for x in a["icc_ci"]], "n": dict(a["n"]),
            "confusion": {k: [[_num(x, 3) for x in line] for line in m] for k, m in a["confusion"].items()}}


def row_json(row: Row, task: str = "binary") -> dict:
    extra = {"au": _au_json(row)} if row.au else {}
    return {
        "task": task, "rank": row.rank, "kind": row.kind, "status": "complete", "label": row.label, "method": row.method,
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
        "note": row.note, **extra,
    }


def leaderboard_json(lb: Leaderboard) -> dict:
    return {
        "dataset": lb.dataset, "task": lb.task, "name": lb.name, "dataset_fingerprint": lb.fingerprint, "subjects": list(lb.subjects), "n_images": lb.n_images,
        "tracking_uri": lb.tracking_uri, "mlflow_ui_command": lb.ui_command,
        "bootstrap": {"unit": "subject", "n_resamples": lb.n_resamples, "seed": lb.bootstrap_seed, "level": 0.95,
                      "exact": lb.bootstrap_exact, "distinct_resamples": lb.distinct_resamples},
        "rows": [row_json(r, lb.task) for r in lb.rows],
        "incomplete": [{"label": r.label, "method": r.method, "status": "incomplete", "seeds": list(r.seeds),
                        "folds_complete": r.folds, "reasons": list(r.reasons), "source": r.source,
                        "mlflow": {"run_ids": list(r.run_ids), "urls": list(r.run_urls)}} for r in lb.incomplete],
        "imbalance": [{k: (_num(v) if isinstance(v, float) else v) for k, v in d.items()} for d in lb.imbalance],
        "reference": ({"source": paper.SOURCE, "note": "reported in the paper, not reproduced here; never ranked. " + paper.NOTE,
                       "rows": list(lb.reference)} if lb.reference else None),
        "warnings": list(lb.warnings),
        **({"human_ceiling": {"label": au.CEILING_LABEL, "note": au.CEILING_NOTE,
                              "au": {k: {m: _num(v) for m, v in d.items()} for k, d in lb.ceiling["au"].items()},
                              "rgs": {k: _num(v) for k, v in lb.ceiling["rgs"].items()}}} if lb.ceiling else {}),
    }


def results_json(leaderboards) -> dict:
    return {"schema": 1, "definitions": DEFINITIONS, "leaderboards": [leaderboard_json(lb) for lb in leaderboards]}


def _fmt(x) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return "" if math.isnan(x) else f"{x:.6f}"
    return str(x)


def _au_columns(r: Row) -> dict:
    a, d = r.au, {}
    for k in AUS:
        d.update({f"au_{k}_qwk": a["qwk"][k], f"au_{k}_qwk_std": a["qwk_std"][k], f"au_{k}_accuracy": a["accuracy"][k],
                  f"au_{k}_macro_f1": a["macro_f1"][k]})
    for k in au.RGS_KEYS:
        d[f"rgs_{k}"], d[f"rgs_{k}_std"] = a["rgs"][k], a["rgs_std"][k]
    d["rgs_icc_a1_ci_low"], d["rgs_icc_a1_ci_high"] = a["icc_ci"]
    return d


def _ceiling_row(lb: Leaderboard) -> dict:
    c = lb.ceiling
    d = {"dataset": lb.dataset, "dataset_fingerprint": lb.fingerprint, "kind": "human-ceiling", "status": "reference",
         "label": au.CEILING_LABEL, "n_images": lb.n_images, "n_subjects": len(lb.subjects)}
    for k in AUS:
        d.update({f"au_{k}_qwk": c["au"][k]["qwk"], f"au_{k}_accuracy": c["au"][k]["accuracy"], f"au_{k}_alpha": c["au"][k]["alpha"]})
    d.update({f"rgs_{k}": v for k, v in c["rgs"].items()})
    d["note"] = au.CEILING_NOTE
    return d


def csv_rows(lb: Leaderboard, subjects=None, with_task: bool = False) -> list[dict]:
    """Flat rows: every complete configuration, the baselines, then the incomplete ones (metrics blank); on an au
    board its AU columns and the human-ceiling row. `with_task`: a `task` column after `dataset_fingerprint`."""
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
        if r.au:
            d.update(_au_columns(r))
        out.append(d)
    if lb.ceiling:
        out.append(_ceiling_row(lb))
    for r in lb.incomplete:
        out.append({"dataset": lb.dataset, "dataset_fingerprint": lb.fingerprint, "kind": "method", "status": "incomplete",
                    "label": r.label, "method": r.method, "source": r.source, "seeds": ";".join(r.seeds), "n_seeds": len(r.seeds),
                    "mlflow_run_ids": ";".join(r.run_ids), "folds_complete": r.folds, "note": "; ".join(r.reasons)})
    if with_task:
        out = [{**{k: v for k, v in d.items() if k in ("dataset", "dataset_fingerprint")}, "task": lb.task, **d} for d in out]
    return out


def results_csv(leaderboards) -> str:
    """One CSV for one or several leaderboards (per-rat columns are the union, blank where a rat is absent)."""
    subjects_all = []
    for lb in leaderboards:
        subjects_all += [s for s in lb.subjects if s not in subjects_all]
    with_task = any(lb.task != "binary" for lb in leaderboards)
    rows = []
    for lb in leaderboards:
        rows += csv_rows(lb, subjects_all if len(leaderboards) > 1 else None, with_task)
    columns = []
    for r in rows:
        columns += [c for c in r if c not in columns]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: _fmt(r.get(c)) for c in columns})
    return buf.getvalue()
