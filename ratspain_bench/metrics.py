"""Binary metrics as pure functions of a confusion matrix; positive class = pain = 1.

"Pooled" means one confusion matrix summed over all folds: the paper's LORO column (Eqs. 7-8).
Edge cases follow scikit-learn: F1 is 0 when there are no positives at all, MCC is 0 when undefined,
balanced accuracy averages the recall of the classes present in y_true. `f1_or_none` tells that 0/0 case
apart (None): the leaderboard shows it as undefined rather than as a score of 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Confusion:
    tp: int
    fp: int
    fn: int
    tn: int

    def __add__(self, other: "Confusion") -> "Confusion":
        return Confusion(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn


def confusion(y_true, y_pred) -> Confusion:
    t, p = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    return Confusion(int(((t == 1) & (p == 1)).sum()), int(((t == 0) & (p == 1)).sum()),
                     int(((t == 1) & (p == 0)).sum()), int(((t == 0) & (p == 0)).sum()))


def f1(c: Confusion) -> float:
    """F1 of the pain class, 2TP / (2TP + FP + FN) (the paper's Eq. 7)."""
    d = 2 * c.tp + c.fp + c.fn
    return 2 * c.tp / d if d else 0.0


def f1_or_none(c: Confusion) -> float | None:
    """F1 of the pain class, or None where it is undefined: no pain image and no pain prediction (0/0)."""
    return f1(c) if 2 * c.tp + c.fp + c.fn else None


def accuracy(c: Confusion) -> float:
    """(TP + TN) / N as a fraction (the paper's Eq. 8 prints it x100)."""
    return (c.tp + c.tn) / c.n if c.n else 0.0


def balanced_accuracy(c: Confusion) -> float:
    recalls = []
    if c.tp + c.fn:
        recalls.append(c.tp / (c.tp + c.fn))
    if c.tn + c.fp:
        recalls.append(c.tn / (c.tn + c.fp))
    return sum(recalls) / len(recalls) if recalls else 0.0


def mcc(c: Confusion) -> float:
    d = math.sqrt((c.tp + c.fp) * (c.tp + c.fn) * (c.tn + c.fp) * (c.tn + c.fn))
    return (c.tp * c.tn - c.fp * c.fn) / d if d else 0.0


def summary(c: Confusion) -> dict:
    """The metric block of the contract's `score` JSON."""
    return {"f1": f1(c), "accuracy": accuracy(c), "balanced_accuracy": balanced_accuracy(c), "mcc": mcc(c),
            "tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn}


def score(y_true, y_pred, subjects) -> dict:
    """Pooled, per-subject and mean-over-subjects results (the contract's `score --format json`)."""
    from .data.dataset import sort_subjects

    y_true, y_pred, subjects = np.asarray(y_true), np.asarray(y_pred), np.asarray([str(s) for s in subjects])
    per = {}
    for s in sort_subjects(set(subjects)):
        m = subjects == s
        per[s] = {**summary(confusion(y_true[m], y_pred[m])), "n": int(m.sum())}
    pooled = sum((confusion(y_true[subjects == s], y_pred[subjects == s]) for s in per), Confusion(0, 0, 0, 0))
    mean = {k: float(np.mean([v[k] for v in per.values()])) if per else 0.0 for k in ("f1", "accuracy")}
    return {"n": int(len(y_true)), "pooled": summary(pooled), "per_subject": per, "mean_over_subjects": mean}


def cell(f1_value: float, accuracy_value: float) -> str:
    """A paper-style table cell, "0.7731/74.17" (F1 / accuracy in percent)."""
    return f"{f1_value:.4f}/{100 * accuracy_value:.2f}"
