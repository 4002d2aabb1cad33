"""Label counts by confidence (the paper's Table 1), per subject (Table 2) and per LORO fold (Table 4),
as pure functions.

All functions take a dataset table (or a `Dataset`) with columns `subject`, `label` (0/1) and, when
known, `level` (0/1/2, nullable). `moderate`/`severe` count the rows whose level is known, so they
are 0 for a dataset with binary labels only; `pain` always counts `label == 1`.

Fold entries (keyed by the held-out subject) carry the contract's four counts plus:
- `train_imbalance_ratio`: majority / minority class count in the training set (null if a class is absent);
- `train_majority`: `no_pain` or `pain`, the training set's larger class; on a tie `no_pain`, the
  choice of scikit-learn's `DummyClassifier(strategy="most_frequent")` (the first class in order);
- `majority_baseline_accuracy`: accuracy on the test subject of always predicting `train_majority`;
- `majority_baseline_f1`: the pain-class F1 of that constant prediction (0 when it predicts no pain).

Table 1 (`confidence` in the JSON, not in the CSV): `high`, `low` and `total` image counts and the
high-confidence rows by level (`high_levels`: no_pain/moderate/severe). `low` counts the low rows in
the table plus those the reader left out (`Dataset.n_low_confidence_excluded`); a table without a
`confidence` column is all high.

CSV layout (wide, one table): one row per subject, in subject order, with the Table 2 columns
(`no_pain,moderate,severe,pain,total`) followed by the fold columns of the fold that holds that
subject out (`train_no_pain,train_pain,test_no_pain,test_pain,train_imbalance_ratio,train_majority,
majority_baseline_accuracy,majority_baseline_f1`), then a last row with `subject` = `total`, the
totals of the count columns and the fold columns blank. Fractions are written unrounded.
"""
from __future__ import annotations

import csv
import io

import pandas as pd

from .dataset import sort_subjects

COUNT_KEYS = ("no_pain", "moderate", "severe", "pain", "total")
FOLD_KEYS = ("train_no_pain", "train_pain", "test_no_pain", "test_pain")
FOLD_EXTRA_KEYS = ("train_imbalance_ratio", "train_majority", "majority_baseline_accuracy", "majority_baseline_f1")


def _table(data) -> pd.DataFrame:
    return data.table if hasattr(data, "table") else data


def _counts(group: pd.DataFrame) -> dict:
    label = group["label"].astype(int)
    level = group["level"] if "level" in group else pd.Series([pd.NA] * len(group), index=group.index)
    return {"no_pain": int((label == 0).sum()),
            "moderate": int((level == 1).fillna(False).sum()),
            "severe": int((level == 2).fillna(False).sum()),
            "pain": int((label == 1).sum()),
            "total": int(len(group))}


def subject_counts(data) -> dict[str, dict]:
    """Table 2: {subject: {no_pain, moderate, severe, pain, total}} in subject order."""
    t = _table(data)
    subjects = t["subject"].astype(str)
    return {s: _counts(t[subjects == s]) for s in sort_subjects(subjects.unique())}


def totals(data) -> dict:
    """{no_pain, pain, total} over the whole table (the contract's `total` block)."""
    c = _counts(_table(data))
    return {"no_pain": c["no_pain"], "pain": c["pain"], "total": c["total"]}


def confidence_counts(data) -> dict:
    """Table 1: {high, low, total, high_levels: {no_pain, moderate, severe}}."""
    t = _table(data)
    low_rows = (t["confidence"] == "low") if "confidence" in t else pd.Series(False, index=t.index)
    c = _counts(t[~low_rows])
    low = int(low_rows.sum()) + getattr(data, "n_low_confidence_excluded", 0)
    return {"high": c["total"], "low": low, "total": c["total"] + low,
            "high_levels": {k: c[k] for k in ("no_pain", "moderate", "severe")}}


def majority_baseline(train_no_pain: int, train_pain: int, test_no_pain: int, test_pain: int) -> dict:
    """Imbalance ratio of the training set and the test-subject scores of predicting its majority class."""
    majority = "pain" if train_pain > train_no_pain else "no_pain"  # tie -> no_pain (sklearn's most_frequent)
    lo, hi = sorted((train_no_pain, train_pain))
    n_test = test_no_pain + test_pain
    correct = test_pain if majority == "pain" else test_no_pain
    f1 = 2 * test_pain / (2 * test_pain + test_no_pain) if majority == "pain" and test_pain else 0.0
    return {"train_imbalance_ratio": hi / lo if lo else None,
            "train_majority": majority,
            "majority_baseline_accuracy": correct / n_test if n_test else 0.0,
            "majority_baseline_f1": f1}


def fold_counts(data) -> dict[str, dict]:
    """Table 4 plus baselines: {held-out subject: {train_no_pain, train_pain, test_no_pain, test_pain, ...}}."""
    per = subject_counts(data)
    all_no, all_pain = sum(c["no_pain"] for c in per.values()), sum(c["pain"] for c in per.values())
    out = {}
    for s, c in per.items():
        f = {"train_no_pain": all_no - c["no_pain"], "train_pain": all_pain - c["pain"],
             "test_no_pain": c["no_pain"], "test_pain": c["pain"]}
        out[s] = {**f, **majority_baseline(**f)}
    return out


def imbalance_report(data) -> dict:
    """The contract's `data imbalance --format json` object, plus Table 1 under `confidence`."""
    return {"subjects": subject_counts(data), "folds": fold_counts(data), "total": totals(data),
            "confidence": confidence_counts(data)}


# ---------------------------------------------------------------- renderings


def to_markdown(report: dict, title: str | None = None) -> str:
    """Three tabulate tables titled like the paper's Tables 1, 2 and 4."""
    from tabulate import tabulate

    subj, folds, tot, conf = report["subjects"], report["folds"], report["total"], report["confidence"]
    lv = conf["high_levels"]
    t1 = tabulate([["High confidence", "No pain (0)", lv["no_pain"]], ["", "Moderate (1)", lv["moderate"]],
                   ["", "Severe (2)", lv["severe"]], ["", "All", conf["high"]],
                   ["Low confidence", "N/A", conf["low"]], ["Total", "", conf["total"]]],
                  headers=["Subset", "Pain level", "Images"], tablefmt="github")
    rows2 = [[s, c["no_pain"], c["moderate"], c["severe"], c["pain"], c["total"]] for s, c in subj.items()]
    rows2.append(["Total", tot["no_pain"], sum(c["moderate"] for c in subj.values()),
                  sum(c["severe"] for c in subj.values()), tot["pain"], tot["total"]])
    t2 = tabulate(rows2, headers=["Subject", "No pain (0)", "Moderate (1)", "Severe (2)", "Pain (1+2)", "Total"],
                  tablefmt="github")
    rows4 = []
    for s, f in folds.items():
        ratio = f["train_imbalance_ratio"]
        rows4.append([s, f["train_no_pain"], f["train_pain"], f["test_no_pain"], f["test_pain"],
                      "-" if ratio is None else f"{ratio:.3f}", f["train_majority"].replace("_", " "),
                      f"{100 * f['majority_baseline_accuracy']:.2f}", f"{f['majority_baseline_f1']:.4f}"])
    t4 = tabulate(rows4, headers=["Held-out subject", "Train no pain", "Train pain", "Test no pain", "Test pain",
                                  "Train ratio (maj/min)", "Train majority", "Majority baseline acc. (%)",
                                  "Majority baseline F1"], tablefmt="github", disable_numparse=True,
                  colalign=("left",) + ("right",) * 5 + ("left",) + ("right",) * 2)
    head = f"# Label imbalance: {title}\n\n" if title else ""
    return (f"{head}## Table 1. Number of images by confidence and pain level\n\n"
            "Low-confidence images (fewer than three accepted AU grades) are unlabelled in the paper and left out "
            f"of Tables 2 and 4 by default (`--include-low-confidence` keeps those with a level).\n\n{t1}\n\n"
            f"## Table 2. Number of images per subject and pain level\n\n{t2}\n\n"
            "## Table 4. Training and test label counts of each leave-one-subject-out fold\n\n"
            "The baseline always predicts the training set's majority class (a tie predicts no pain) "
            f"and is scored on the held-out subject.\n\n{t4}\n")


CSV_COLUMNS = ("subject",) + COUNT_KEYS + FOLD_KEYS + FOLD_EXTRA_KEYS


def to_csv(report: dict) -> str:
    """One wide table: a row per subject (its counts and its fold), then a `total` row (see module doc)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for s, c in report["subjects"].items():
        f = report["folds"][s]
        w.writerow([s, *(c[k] for k in COUNT_KEYS), *(f[k] for k in FOLD_KEYS),
                    *("" if f[k] is None else f[k] for k in FOLD_EXTRA_KEYS)])
    subj, tot = report["subjects"], report["total"]
    w.writerow(["total", tot["no_pain"], sum(c["moderate"] for c in subj.values()),
                sum(c["severe"] for c in subj.values()), tot["pain"], tot["total"],
                *([""] * (len(FOLD_KEYS) + len(FOLD_EXTRA_KEYS)))])
    return buf.getvalue()
