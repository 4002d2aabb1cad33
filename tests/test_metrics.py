"""Metrics against scikit-learn and hand-computed cases; pooling; paper-style cells."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, matthews_corrcoef

from ratspain_bench.metrics import Confusion, accuracy, balanced_accuracy, cell, confusion, f1, mcc, score, summary


def sk(y_true, y_pred) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns on single-class and zero-division cases
        return {"f1": f1_score(y_true, y_pred, pos_label=1, zero_division=0),
                "accuracy": accuracy_score(y_true, y_pred),
                "balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
                "mcc": matthews_corrcoef(y_true, y_pred)}


def ours(y_true, y_pred) -> dict:
    c = confusion(y_true, y_pred)
    return {"f1": f1(c), "accuracy": accuracy(c), "balanced_accuracy": balanced_accuracy(c), "mcc": mcc(c)}


@pytest.mark.parametrize("seed", range(40))
def test_random_cases_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    p_true, p_pred = rng.random(2)
    y_true = (rng.random(n) < p_true).astype(int)
    y_pred = (rng.random(n) < p_pred).astype(int)
    a, b = ours(y_true, y_pred), sk(y_true, y_pred)
    for k in a:
        assert a[k] == pytest.approx(b[k], abs=1e-12), (k, y_true, y_pred)


@pytest.mark.parametrize("y_true,y_pred", [
    ([1, 1, 1, 1], [1, 1, 0, 1]),  # one class (pain) only
    ([0, 0, 0], [0, 1, 0]),  # one class (no pain) only: F1 of pain is 0
    ([0, 0, 0], [0, 0, 0]),  # all correct, no positives anywhere
    ([1, 1], [1, 1]),
    ([0, 1], [1, 0]),  # all wrong
    ([1, 0, 1, 0], [1, 1, 1, 1]),  # constant prediction: MCC undefined -> 0
])
def test_edge_cases_match_sklearn(y_true, y_pred):
    a, b = ours(y_true, y_pred), sk(y_true, y_pred)
    for k in a:
        assert a[k] == pytest.approx(b[k], abs=1e-12), k


def test_hand_computed():
    # TP=3, FP=1, FN=2, TN=4
    y_true = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    y_pred = [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    c = confusion(y_true, y_pred)
    assert c == Confusion(tp=3, fp=1, fn=2, tn=4) and c.n == 10
    assert f1(c) == pytest.approx(6 / 9)  # 2TP / (2TP + FP + FN)
    assert accuracy(c) == pytest.approx(0.7)
    assert balanced_accuracy(c) == pytest.approx((3 / 5 + 4 / 5) / 2)
    assert mcc(c) == pytest.approx((3 * 4 - 1 * 2) / math.sqrt(4 * 5 * 5 * 6))


def test_subject_with_one_class_only():
    # subject "b" has pain images only: its balanced accuracy is the pain recall, its MCC 0
    y_true = [0, 1, 0, 1, 1, 1, 1]
    y_pred = [0, 1, 1, 1, 1, 0, 1]
    subj = ["a", "a", "a", "a", "b", "b", "b"]
    r = score(y_true, y_pred, subj)
    b = r["per_subject"]["b"]
    assert (b["tp"], b["fp"], b["fn"], b["tn"], b["n"]) == (2, 0, 1, 0, 3)
    assert b["accuracy"] == pytest.approx(2 / 3)
    assert b["f1"] == pytest.approx(4 / 5)
    assert b["balanced_accuracy"] == pytest.approx(2 / 3)
    assert b["mcc"] == 0.0
    for k, v in sk([1, 1, 1], [1, 0, 1]).items():
        assert b[k] == pytest.approx(v)


def test_pooled_is_one_summed_confusion_matrix_not_a_mean():
    rng = np.random.default_rng(3)
    subj = np.repeat(["1", "2", "3", "10"], [30, 5, 17, 8])
    y_true = rng.integers(0, 2, len(subj))
    y_pred = rng.integers(0, 2, len(subj))
    r = score(y_true, y_pred, subj)
    assert list(r["per_subject"]) == ["1", "2", "3", "10"]  # numeric ids in numeric order
    assert r["n"] == 60
    pooled = confusion(y_true, y_pred)
    assert r["pooled"] == summary(pooled)
    assert sum(v["tp"] for v in r["per_subject"].values()) == pooled.tp
    for k, v in sk(y_true, y_pred).items():
        assert r["pooled"][k] == pytest.approx(v)
    assert r["mean_over_subjects"]["f1"] == pytest.approx(np.mean([v["f1"] for v in r["per_subject"].values()]))
    assert r["mean_over_subjects"]["accuracy"] == pytest.approx(
        np.mean([accuracy_score(y_true[subj == s], y_pred[subj == s]) for s in ["1", "2", "3", "10"]]))
    assert r["pooled"]["f1"] != pytest.approx(r["mean_over_subjects"]["f1"])


def test_score_json_shape():
    r = score([0, 1, 1], [0, 1, 0], ["1", "1", "2"])
    assert set(r) == {"n", "pooled", "per_subject", "mean_over_subjects"}
    assert set(r["pooled"]) == {"f1", "accuracy", "balanced_accuracy", "mcc", "tp", "fp", "fn", "tn"}
    assert set(r["per_subject"]["1"]) == set(r["pooled"]) | {"n"}
    assert set(r["mean_over_subjects"]) == {"f1", "accuracy"}
    assert all(isinstance(r["pooled"][k], int) for k in ("tp", "fp", "fn", "tn"))


def test_cell_formatting():
    assert cell(0.77314, 0.74166) == "0.7731/74.17"
    assert cell(0.0, 1.0) == "0.0000/100.00"
    assert cell(2 / 3, 0.5) == "0.6667/50.00"
