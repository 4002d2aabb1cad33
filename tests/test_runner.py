"""The run command end to end on a tiny dataset: MLflow contents, predictions, resume and kill -9."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
from tinydata import make_dataset

from ratspain_bench import tracking
from ratspain_bench.cli import main
from ratspain_bench.data import load_dataset
from ratspain_bench.metrics import score
from ratspain_bench.protocol import leave_one_subject_out

SLOW_METHOD = '''
import os, time
from dataclasses import dataclass
import numpy as np
from ratspain_bench.methods import Method, Predictions

@dataclass(frozen=True)
class Config:
    image_size: int = 32

class Counting(Method):
    """Logs each fit; sleeps on subject c's fold while the file named by $SLOW_FLAG exists."""
    Config = Config
    family = "counting"
    def fit(self, train):
        held_out = sorted(set("abc") - set(train.subjects))[0]
        with open(os.environ["FIT_LOG"], "a") as f:
            f.write(held_out + "\\n")
        while held_out == "c" and os.path.exists(os.environ["SLOW_FLAG"]):
            time.sleep(0.1)
        self.threshold = float(np.median(train.images.mean(axis=(1, 2, 3))))
    def predict(self, test):
        s = test.images.mean(axis=(1, 2, 3))
        return Predictions((s > self.threshold).astype(int), np.clip(s / 255, 0, 1))
'''


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("runner")
    make_dataset(root / "data")
    sub = root / "submissions" / "counting"
    sub.mkdir(parents=True)
    (sub / "submission.toml").write_text('name = "counting"\nentry_point = "method:Counting"\n')
    (sub / "method.py").write_text(textwrap.dedent(SLOW_METHOD))
    e = dict(os.environ, RATSPAIN_CACHE_DIR=str(root / "cache"), RATSPAIN_SUBMISSIONS_DIR=str(root / "submissions"),
             FIT_LOG=str(root / "fits.log"), SLOW_FLAG=str(root / "slow"), MLFLOW_TRACKING_URI="")
    e.pop("MLFLOW_TRACKING_URI")
    return root, e


def test_folds_never_share_subject_or_image(tmp_path):
    ds = load_dataset(make_dataset(tmp_path / "d"))
    folds = leave_one_subject_out(ds.table["subject"], ds.table["image"])
    assert [f.subject for f in folds] == ["a", "b", "c"]
    for f in folds:
        assert not set(f.train_idx) & set(f.test_idx)
        assert set(ds.table["subject"].iloc[list(f.test_idx)]) == {f.subject}
    assert sorted(i for f in folds for i in f.test_idx) == list(range(len(ds)))


def test_run_logs_mlflow_and_predictions_score_matches(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RATSPAIN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    data = make_dataset(tmp_path / "data")
    runs = tmp_path / "runs"
    assert main(["run", "--data", str(data), "--methods", "lbp-r1p8-4x4", "--runs-dir", str(runs), "--quiet", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "Rat#a" in out and "LORO (pooled)" in out
    c = tracking.client(runs)
    exp = c.get_experiment_by_name(f"ratspain/{data.name}")
    parents = tracking.find_runs(c, exp.experiment_id, role="parent")
    assert len(parents) == 1
    p = parents[0]
    assert p.data.tags["ratspain.status"] == "complete"
    assert p.data.params["method"] == "lbp-r1p8-4x4" and p.data.params["cfg.grid"] == "4" and p.data.params["seed"] == "3"
    assert "version.torch" in p.data.params and p.data.params["protocol"] == "loro"
    folds = tracking.find_runs(c, exp.experiment_id, role="fold")
    assert sorted(r.data.tags["ratspain.subject"] for r in folds) == ["a", "b", "c"]
    assert all(r.data.tags["mlflow.parentRunId"] == p.info.run_id for r in folds)
    pred_files = list((runs / "predictions").rglob("*.csv"))
    assert len(pred_files) == 1 and "lbp-r1p8-4x4" in pred_files[0].name
    preds = pd.read_csv(pred_files[0], dtype={"subject": str})
    assert list(preds.columns[:4]) == ["image", "subject", "y_true", "y_pred"] and len(preds) == 24
    s = score(preds["y_true"], preds["y_pred"], preds["subject"])
    assert p.data.metrics["pooled_f1"] == pytest.approx(s["pooled"]["f1"])
    assert p.data.metrics["pooled_accuracy"] == pytest.approx(s["pooled"]["accuracy"])
    assert {"pose_frontal_f1", "pose_extreme_accuracy"} <= set(p.data.metrics)
    arts = {a.path for a in c.list_artifacts(p.info.run_id)}
    assert {"predictions.csv", "score.json", "per_subject.csv", "confusion_matrix.png"} <= arts
    # a second identical run is not redone
    assert main(["run", "--data", str(data), "--methods", "lbp-r1p8-4x4", "--runs-dir", str(runs), "--quiet", "--seed", "3"]) == 0
    assert len(tracking.find_runs(c, exp.experiment_id, role="fold")) == 3


def _cli(env, *args):
    return [sys.executable, "-m", "ratspain_bench", *args]


def test_kill_9_then_resume_finishes_only_missing_folds(env):
    root, e = env
    runs = root / "runs"
    args = _cli(e, "run", "--data", str(root / "data"), "--methods", "counting", "--runs-dir", str(runs), "--quiet")
    (root / "slow").write_text("")
    proc = subprocess.Popen(args, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = root / "fits.log"
    deadline = time.time() + 120
    while not (log.exists() and "c" in log.read_text().split()):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (root / "slow").unlink()
    c = tracking.client(runs)
    exp = c.get_experiment_by_name("ratspain/data").experiment_id
    parent = tracking.find_runs(c, exp, role="parent")[0]
    assert parent.data.tags["ratspain.status"] == "running"  # the killed run is not counted as complete
    assert "pooled_f1" not in parent.data.metrics
    r = subprocess.run(args, env=e, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert log.read_text().split() == ["a", "b", "c", "c"]  # folds a and b were not redone
    parents = tracking.find_runs(c, exp, role="parent")
    assert len(parents) == 1 and parents[0].data.tags["ratspain.status"] == "complete"
    complete = [x for x in tracking.find_runs(c, exp, role="fold") if x.data.tags["ratspain.status"] == "complete"]
    assert sorted(x.data.tags["ratspain.subject"] for x in complete) == ["a", "b", "c"]
    preds = pd.read_csv(next((runs / "predictions").rglob("*.csv")))
    assert len(preds) == 24 and preds["image"].is_unique


def test_unknown_method_exits_2_with_hint(tmp_path, capsys):
    assert main(["run", "--data", str(make_dataset(tmp_path / "d")), "--methods", "lbp-r1p8-4x5", "--runs-dir", str(tmp_path)]) == 2
    assert "did you mean lbp-r1p8-4x4" in capsys.readouterr().err


def test_labels_only_dataset_refuses_training(tmp_path, capsys):
    (tmp_path / "labels.json").write_text(json.dumps({
        "x1.png": [{"AnimalNumber": "1", "GrimaceScale": "0"}], "x2.png": [{"AnimalNumber": "2", "GrimaceScale": "1"}],
        "x3.png": [{"AnimalNumber": "1", "GrimaceScale": "2"}], "x4.png": [{"AnimalNumber": "2", "GrimaceScale": "0"}]}))
    assert main(["run", "--data", str(tmp_path / "labels.json"), "--methods", "lbp-r1p8-4x4", "--runs-dir", str(tmp_path / "r")]) == 2
    assert "labels only" in capsys.readouterr().err


def test_weights_and_finetune_reach_only_methods_that_declare_them():
    from ratspain_bench.methods.registry import get_method
    from ratspain_bench.runner import RunOptions, method_config

    opts = RunOptions(where_declared={"weights": "none", "finetune": "full"})
    lbp = method_config(get_method("lbp-r1p8-4x4"), opts)
    assert not hasattr(lbp, "weights")
    deep = method_config(get_method("painseeker"), opts)
    assert (deep.weights, deep.finetune) == ("none", "full")
    lite = method_config(get_method("painseeker-lite0"), RunOptions())
    assert lite.weights == "lite0" and lite.finetune == "frozen"  # the row's own weights, the quick profile's mode
    with pytest.raises(KeyError, match="no parameter 'weights'"):  # --set still applies to every method
        method_config(get_method("lbp-r1p8-4x4"), RunOptions(overrides={"weights": "none"}))
