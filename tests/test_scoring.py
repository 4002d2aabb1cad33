"""`score PREDICTIONS.csv`: validation messages, JSON and Markdown output, agreement with scikit-learn."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, matthews_corrcoef

from ratspain_bench.cli import main
from ratspain_bench.errors import InputError
from ratspain_bench.evaluation.predictions import read_predictions, score_runs, select, to_json, to_markdown


def write(tmp_path, text, name="preds.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def random_predictions(seed=0, subjects=("1", "2", "3", "4", "5", "6"), n=40, method=None, run_seed=None):
    rng = np.random.default_rng(seed)
    rows = []
    for s in subjects:
        for i in range(n):
            y = int(rng.random() < 0.55)
            p = float(np.clip(0.5 + (0.25 if y else -0.25) + rng.normal(0, 0.3), 0, 1))
            rows.append({"image": f"images/{s}/{i}.jpg", "subject": s, "y_true": y, "y_pred": int(p >= 0.5),
                         "score": round(p, 4), "fold": s, "method": method, "seed": run_seed})
    return rows


def to_csv_text(rows, columns=("image", "subject", "y_true", "y_pred", "score", "fold", "method", "seed")):
    lines = [",".join(columns)]
    for r in rows:
        lines.append(",".join("" if r.get(c) is None else str(r[c]) for c in columns))
    return "\n".join(lines) + "\n"


def run_cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# ---------------------------------------------------------------- bad files: one line, exit 2, file and line named


@pytest.mark.parametrize("text,message", [
    ("", "{p}: empty file (expected a CSV header with image,subject,y_true,y_pred)"),
    ("image,subject,y_true,y_pred\n", "{p}:1: no prediction rows after the header"),
    ("image,subject,y_true\na.png,1,0\n",
     "{p}:1: missing column y_pred (header: image,subject,y_true; required: image,subject,y_true,y_pred)"),
    ("img,subject,label,pred\na.png,1,0,1\n", "{p}:1: missing columns image, y_true, y_pred"),
    ("image,subject,y_true,y_pred\na.png,1,0,1\nb.png,1,2,1\n",
     "{p}:3: y_true must be 0 or 1 (0 no pain, 1 pain), got '2'"),
    ("image,subject,y_true,y_pred\na.png,1,0,yes\n", "{p}:2: y_pred must be 0 or 1 (0 no pain, 1 pain), got 'yes'"),
    ("image,subject,y_true,y_pred\na.png,1,0,1\nb.png,1,1,1\na.png,1,0,0\n",
     "{p}:4: image a.png listed twice (first at line 2)"),
    ("image,subject,y_true,y_pred,method,seed\na.png,1,0,1,lbp,0\na.png,1,0,1,lbp,1\na.png,1,0,0,lbp,0\n",
     "{p}:4: image a.png listed twice for method lbp seed 0 (first at line 2)"),
    ("image,subject,y_true,y_pred,score\na.png,1,0,1,1.5\n",
     "{p}:2: score must be a probability of pain in [0, 1] (or blank), got '1.5'"),
    ("image,subject,y_true,y_pred,score\na.png,1,0,1,nan\n",
     "{p}:2: score must be a probability of pain in [0, 1] (or blank), got 'nan'"),
    ("image,subject,y_true,y_pred\na.png,,0,1\n", "{p}:2: empty subject"),
    ("image,subject,y_true,y_pred\na.png,1,0\n", "{p}:2: 3 fields, the header has 4"),
])
def test_bad_files(tmp_path, capsys, text, message):
    p = write(tmp_path, text)
    with pytest.raises(InputError) as e:
        read_predictions(p)
    assert str(e.value).startswith(message.format(p=p))
    rc, out, err = run_cli(capsys, "score", str(p))
    assert rc == 2 and out == ""
    assert err.startswith("error: " + message.format(p=p)) and err.count("\n") == 1


def test_all_problems_are_counted(tmp_path):
    p = write(tmp_path, "image,subject,y_true,y_pred\na,1,3,0\nb,1,0,4\nc,1,0,1\n")
    with pytest.raises(InputError, match=r":2: y_true must be 0 or 1 .* \(and 1 more\)$"):
        read_predictions(p)


def test_missing_file(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "score", str(tmp_path / "nope.csv"))
    assert rc == 2 and "no such predictions file" in err


def test_blank_score_and_extra_columns_are_fine(tmp_path):
    p = write(tmp_path, "note,image,subject,y_true,y_pred,score\nx,a,1,0,0,\ny,b,2,1,1,0.9\n")
    t = read_predictions(p).table
    assert np.isnan(t["score"].iloc[0]) and t["score"].iloc[1] == 0.9


# ---------------------------------------------------------------- scoring


def test_json_agrees_with_sklearn(tmp_path, capsys):
    rows = random_predictions(1)
    p = write(tmp_path, to_csv_text(rows))
    rc, out, _ = run_cli(capsys, "score", str(p), "--format", "json")
    assert rc == 0
    r = json.loads(out)
    assert set(r) == {"n", "pooled", "per_subject", "mean_over_subjects"} and r["n"] == len(rows)
    y_true = np.array([x["y_true"] for x in rows])
    y_pred = np.array([x["y_pred"] for x in rows])
    subj = np.array([x["subject"] for x in rows])
    assert r["pooled"]["f1"] == pytest.approx(f1_score(y_true, y_pred))
    assert r["pooled"]["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert r["pooled"]["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert r["pooled"]["mcc"] == pytest.approx(matthews_corrcoef(y_true, y_pred))
    assert list(r["per_subject"]) == ["1", "2", "3", "4", "5", "6"]
    for s, v in r["per_subject"].items():
        m = subj == s
        assert v["n"] == m.sum()
        assert v["f1"] == pytest.approx(f1_score(y_true[m], y_pred[m], zero_division=0))
        assert v["accuracy"] == pytest.approx(accuracy_score(y_true[m], y_pred[m]))
    means = [accuracy_score(y_true[subj == s], y_pred[subj == s]) for s in r["per_subject"]]
    assert r["mean_over_subjects"]["accuracy"] == pytest.approx(np.mean(means))


def test_markdown_row(tmp_path, capsys):
    # rat 1: TP=2 FP=0 FN=1 TN=1 -> F1 0.8, acc 75%; rat 2: TP=1 FP=1 FN=0 TN=0 -> F1 0.6667, acc 50%
    text = ("image,subject,y_true,y_pred\n"
            "a,1,1,1\nb,1,1,1\nc,1,1,0\nd,1,0,0\n"
            "e,2,1,1\nf,2,0,1\n")
    p = write(tmp_path, text, name="mine.csv")
    rc, out, _ = run_cli(capsys, "score", str(p), "--format", "md")
    assert rc == 0
    lines = out.strip().splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["Method", "Rat#1", "Rat#2", "LORO"]
    # pooled: TP=3 FP=1 FN=1 TN=1 -> F1 6/8 = 0.75, accuracy 4/6
    assert [c.strip() for c in lines[2].strip("|").split("|")] == ["mine", "0.8000/75.00", "0.6667/50.00", "0.7500/66.67"]


def test_several_methods_and_seeds(tmp_path, capsys):
    rows = (random_predictions(1, method="lbp-r1p8-4x4", run_seed=0) + random_predictions(2, method="resnet18", run_seed=0)
            + random_predictions(3, method="resnet18", run_seed=1))
    p = write(tmp_path, to_csv_text(rows))
    rc, out, _ = run_cli(capsys, "score", str(p))
    assert rc == 0
    r = json.loads(out)
    assert isinstance(r, list) and [(x["method"], x["seed"]) for x in r] == [
        ("lbp-r1p8-4x4", 0), ("resnet18", 0), ("resnet18", 1)]
    alone = [x for x in rows if x["method"] == "resnet18" and x["seed"] == 1]
    y_true, y_pred = [x["y_true"] for x in alone], [x["y_pred"] for x in alone]
    assert r[2]["pooled"]["f1"] == pytest.approx(f1_score(y_true, y_pred))
    assert r[2]["n"] == len(alone)
    rc, out, _ = run_cli(capsys, "score", str(p), "--method", "resnet18", "--seed", "1")
    one = json.loads(out)
    assert rc == 0 and isinstance(one, dict) and one == {k: v for k, v in r[2].items() if k not in ("method", "seed")}
    rc, out, _ = run_cli(capsys, "score", str(p), "--format", "md")
    body = out.strip().splitlines()[2:]
    assert [line.split("|")[1].strip() for line in body] == [
        "lbp-r1p8-4x4 (seed 0)", "resnet18 (seed 0)", "resnet18 (seed 1)"]
    rc, _, err = run_cli(capsys, "score", str(p), "--method", "painseeker")
    assert rc == 2 and "no rows for method painseeker; the file holds: method lbp-r1p8-4x4 seed 0" in err


def test_python_api(tmp_path):
    p = write(tmp_path, to_csv_text(random_predictions(5, subjects=("7", "10"), n=10, method="m", run_seed=3)))
    preds = select(read_predictions(p), method="m")
    scored = score_runs(preds)
    assert scored[0]["method"] == "m" and scored[0]["seed"] == 3
    assert list(to_json(scored)["per_subject"]) == ["7", "10"]
    assert "Rat#7" in to_markdown(scored) and to_markdown(scored).index("Rat#7") < to_markdown(scored).index("Rat#10")
