"""Tables 1, 2 and 4 of the paper reproduced exactly; JSON, Markdown and CSV renderings."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd
import pytest

from ratspain_bench.cli import main
from ratspain_bench.data.dataset import read_dataset
from ratspain_bench.data.imbalance import (
    CSV_COLUMNS, fold_counts, imbalance_report, majority_baseline, subject_counts, to_csv, to_markdown, totals)

PAPER = json.loads(Path("/work/shared/paper/ratspain_paper.json").read_text())
TABLE2, TABLE4 = PAPER["table2_per_rat"], PAPER["table4_loro_training_counts"]


def paper_table(binary_only: bool = False) -> pd.DataFrame:
    """1,138 labels-only rows with exactly the paper's Table 2 counts."""
    rows = []
    for subject, c in TABLE2.items():
        for level, key in enumerate(("no_pain", "moderate", "severe")):
            rows += [{"subject": subject, "level": None if binary_only else level, "label": int(level >= 1)}] * c[key]
    t = pd.DataFrame(rows)
    t["level"] = t["level"].astype("Int64")
    return t


def check_against_paper(report: dict) -> None:
    assert list(report["subjects"]) == ["1", "2", "3", "4", "5", "6"]
    for s, c in TABLE2.items():
        got = report["subjects"][s]
        assert {k: got[k] for k in ("no_pain", "moderate", "severe", "total")} == c
        assert got["pain"] == c["moderate"] + c["severe"]
    for s, c in TABLE4.items():
        f = report["folds"][s]
        assert (f["train_no_pain"], f["train_pain"]) == (c["no_pain"], c["pain"])
        assert (f["test_no_pain"], f["test_pain"]) == (TABLE2[s]["no_pain"], TABLE2[s]["moderate"] + TABLE2[s]["severe"])
    t1 = PAPER["table1_dataset"]["high_confidence"]
    assert report["total"] == {"no_pain": t1["no_pain"], "pain": t1["moderate"] + t1["severe"], "total": t1["total"]}
    assert report["confidence"]["high"] == t1["total"]
    assert report["confidence"]["high_levels"] == {k: t1[k] for k in ("no_pain", "moderate", "severe")}


def test_tables_2_and_4_from_paper_counts():
    t = paper_table()
    assert len(t) == 1138
    check_against_paper(imbalance_report(t))


def test_json_shape_is_the_contract():
    r = imbalance_report(paper_table())
    assert set(r) == {"subjects", "folds", "total", "confidence"}  # the contract's keys plus Table 1
    assert r["confidence"] == {"high": 1138, "low": 0, "total": 1138,
                               "high_levels": {"no_pain": 541, "moderate": 591, "severe": 6}}
    assert all(set(v) == {"no_pain", "moderate", "severe", "pain", "total"} for v in r["subjects"].values())
    assert set(r["total"]) == {"no_pain", "pain", "total"}
    for f in r["folds"].values():
        assert {"train_no_pain", "train_pain", "test_no_pain", "test_pain"} <= set(f)
    json.dumps(r, allow_nan=False)


def test_binary_labels_only_give_zero_moderate_severe():
    r = subject_counts(paper_table(binary_only=True))
    assert r["1"] == {"no_pain": 56, "moderate": 0, "severe": 0, "pain": 165, "total": 221}
    assert totals(paper_table(binary_only=True)) == {"no_pain": 541, "pain": 597, "total": 1138}


def test_ratio_and_majority_baseline():
    folds = fold_counts(paper_table())
    f1 = folds["1"]  # train 485 no pain / 432 pain -> predict no pain; rat 1 has 56 of 221 no pain
    assert f1["train_majority"] == "no_pain"
    assert f1["train_imbalance_ratio"] == pytest.approx(485 / 432)
    assert f1["majority_baseline_accuracy"] == pytest.approx(56 / 221)
    assert f1["majority_baseline_f1"] == 0.0
    f3 = folds["3"]  # train 393 / 547 -> predict pain; rat 3: 50 pain of 198
    assert f3["train_majority"] == "pain"
    assert f3["majority_baseline_accuracy"] == pytest.approx(50 / 198)
    assert f3["majority_baseline_f1"] == pytest.approx(100 / 248)
    f5 = folds["5"]  # 478 / 478: a tie predicts no pain (sklearn DummyClassifier most_frequent)
    assert f5["train_imbalance_ratio"] == 1.0 and f5["train_majority"] == "no_pain"
    assert f5["majority_baseline_accuracy"] == pytest.approx(63 / 182)


def test_majority_baseline_against_sklearn_dummy():
    import numpy as np
    from sklearn.dummy import DummyClassifier
    from sklearn.metrics import accuracy_score, f1_score

    t = paper_table()
    for s, f in fold_counts(t).items():
        train, test = t[t["subject"] != s], t[t["subject"] == s]
        clf = DummyClassifier(strategy="most_frequent").fit(np.zeros((len(train), 1)), train["label"])
        pred = clf.predict(np.zeros((len(test), 1)))
        assert f["majority_baseline_accuracy"] == pytest.approx(accuracy_score(test["label"], pred))
        assert f["majority_baseline_f1"] == pytest.approx(f1_score(test["label"], pred, zero_division=0))


def test_missing_class_in_training_gives_null_ratio():
    b = majority_baseline(train_no_pain=0, train_pain=10, test_no_pain=3, test_pain=1)
    assert b["train_imbalance_ratio"] is None and b["train_majority"] == "pain"
    assert b["majority_baseline_accuracy"] == pytest.approx(0.25)


def test_markdown_has_the_three_tables():
    md = to_markdown(imbalance_report(paper_table()), title="paper")
    assert "## Table 1." in md and "## Table 2." in md and "## Table 4." in md
    assert "| Low confidence  | N/A          |        0 |" in md
    assert "| Total " in md and "541" in md and "1138" in md
    row5 = next(line for line in md.splitlines() if line.startswith("| 5 ") and "478" in line)
    assert row5.count("478") == 2 and "34.62" in row5


def test_csv_is_one_wide_table():
    text = to_csv(imbalance_report(paper_table()))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["subject"] for r in rows] == ["1", "2", "3", "4", "5", "6", "total"]
    assert rows[0]["train_no_pain"] == "485" and rows[0]["train_pain"] == "432"
    assert rows[-1]["total"] == "1138" and rows[-1]["train_no_pain"] == ""


def test_cli_on_whitefurredmice_json_labels_only(capsys):
    path = "/work/shared/datasets/whitefurredmice/eyes_detection_data.json"
    assert main(["data", "imbalance", "--data", path, "--format", "json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["subjects"]["1"] == {"no_pain": 97, "moderate": 36, "severe": 49, "pain": 85, "total": 182}
    assert r["total"] == {"no_pain": 552, "pain": 535, "total": 1087}
    assert r["folds"]["8"]["train_no_pain"] == 552 - 30
    for fmt in ("md", "csv"):
        assert main(["data", "imbalance", "--data", path, "--format", fmt]) == 0
        assert "1087" in capsys.readouterr().out


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    synth = pytest.importorskip("ratspain_bench.data.synth")
    out = tmp_path_factory.mktemp("replica") / "rep"
    synth.generate_replica(out, seed=0, size=32)
    return out


def test_tables_1_2_and_4_on_the_generated_replica(replica, capsys):
    ds, problems = read_dataset(replica)
    assert [p for p in problems if p.severity == "error"] == []
    check_against_paper(imbalance_report(ds))
    assert main(["data", "imbalance", "--data", str(replica), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    check_against_paper(report)
    t1 = PAPER["table1_dataset"]
    assert {k: report["confidence"][k] for k in ("high", "low", "total")} == {
        "high": t1["high_confidence"]["total"], "low": t1["low_confidence_unlabelled"], "total": t1["total_images"]}
    assert main(["data", "imbalance", "--data", str(replica), "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert "| Low confidence  | N/A          |      157 |" in md and "| Total           |              |     1295 |" in md
