"""The Python API at the package root: lazy, complete, and what the README shows."""
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from tinydata import make_dataset

import ratspain_bench as rb

README = Path(__file__).resolve().parents[1] / "README.md"


def test_import_is_light():
    code = "import sys, ratspain_bench as rb; print(sorted(m for m in ('torch', 'mlflow', 'pandas', 'sklearn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_the_api_names():
    for name in ("load_dataset", "list_methods", "get_method", "run", "score", "leaderboard", "sensitivity", "tune", "validate"):
        assert callable(getattr(rb, name)), name
    with pytest.raises(AttributeError):
        rb.not_a_function


def test_list_and_get_methods():
    assert [s.name for s in rb.list_methods("lbp-r1*")] == ["lbp-r1p8-4x4", "lbp-r1p8-8x8", "lbp-r1p8-16x16"]
    assert rb.get_method("timm:efficientnet_b0").family == "timm"
    assert rb.suites()["lbp"] == [s.name for s in rb.list_methods("lbp-*")]


def test_run_table_predictions_and_score_agree(tmp_path, monkeypatch):
    monkeypatch.setenv("RATSPAIN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    data = make_dataset(tmp_path / "data")
    r = rb.run(["lbp-r1p8-4x4", "lbp-r3p8-4x4"], str(data), runs_dir=tmp_path / "runs")
    t = r.table
    assert t["method"].tolist() == ["lbp-r1p8-4x4", "lbp-r3p8-4x4"] and (t["status"] == "complete").all()
    assert {"pooled_f1", "pooled_accuracy", "mean_f1", "f1_rata", "accuracy_ratc", "code_hash", "run_id"} <= set(t.columns)
    p = r.predictions
    assert len(p) == 48 and set(p["method"]) == set(t["method"])
    one = p[p["method"] == "lbp-r1p8-4x4"]
    assert rb.score(one)["pooled"]["f1"] == pytest.approx(t.loc[0, "pooled_f1"])
    assert rb.score(r.results[0].predictions)["pooled"]["accuracy"] == pytest.approx(t.loc[0, "pooled_accuracy"])
    assert "Rat#a" in r.markdown()
    board = rb.leaderboard(runs_dir=tmp_path / "runs", resamples=50)[0]
    assert {row.method for row in board.ranked} == set(t["method"])


def test_readme_from_python_section_runs(tmp_path, tmp_path_factory, monkeypatch):
    """The README's "From Python" code block, executed as written (on the built-in replica)."""
    text = README.read_text()
    section = text.split("## From Python", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RATSPAIN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "replica-cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)
    assert isinstance(scope["r"].table, pd.DataFrame) and scope["r"].table.loc[0, "status"] == "complete"
