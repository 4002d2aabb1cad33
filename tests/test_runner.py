"""The run command end to end on a tiny dataset: MLflow contents, predictions, resume and kill -9, and
results keyed by what made them (dataset content, config, code)."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
from tinydata import make_dataset

from ratspain_bench import api
from ratspain_bench.cli import main
from ratspain_bench.data import load_dataset
from ratspain_bench.evaluation import record
from ratspain_bench.evaluation.record import Store, Tag
from ratspain_bench.methods import registry as reg
from ratspain_bench.metrics import score
from ratspain_bench.protocols import leave_one_subject_out

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


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("RATSPAIN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(reg, "_default", [])
    return tmp_path


@pytest.fixture
def env(isolated, monkeypatch):
    """A tiny dataset and a trusted submission `counting` (it runs in this process, so it may log its fits)."""
    root = isolated
    make_dataset(root / "data")
    sub = root / "submissions" / "counting"
    sub.mkdir(parents=True)
    (sub / "submission.toml").write_text('name = "counting"\nentry_point = "method:Counting"\n')
    (sub / "method.py").write_text(textwrap.dedent(SLOW_METHOD))
    for k, v in dict(RATSPAIN_SUBMISSIONS_DIR=str(root / "submissions"), FIT_LOG=str(root / "fits.log"), SLOW_FLAG=str(root / "slow"),
                     RATSPAIN_TRUST="counting").items():
        monkeypatch.setenv(k, v)
    return root, dict(os.environ)


def parents(runs, dataset_name: str) -> list:
    s = Store(runs)
    exp = s.client.get_experiment_by_name(f"ratspain/{dataset_name}").experiment_id
    return s.find(exp, **{Tag.ROLE: record.PARENT})


def test_folds_never_share_subject_or_image(tmp_path):
    ds = load_dataset(make_dataset(tmp_path / "d"))
    folds = leave_one_subject_out(ds.table["subject"], ds.table["image"])
    assert [f.subject for f in folds] == ["a", "b", "c"]
    for f in folds:
        assert not set(f.train_idx) & set(f.test_idx)
        assert set(ds.table["subject"].iloc[list(f.test_idx)]) == {f.subject}
    assert sorted(i for f in folds for i in f.test_idx) == list(range(len(ds)))


def test_run_logs_mlflow_and_predictions_score_matches(isolated, capsys):
    tmp_path = isolated
    data = make_dataset(tmp_path / "data")
    runs = tmp_path / "runs"
    assert main(["run", "--data", str(data), "--methods", "lbp-r1p8-4x4", "--runs-dir", str(runs), "--quiet", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "Rat#a" in out and "LORO (pooled)" in out and f"MLflow: sqlite:///{(runs / 'mlflow.db').resolve()}" in out
    (p,) = parents(runs, data.name)
    assert p.data.tags[Tag.STATUS] == "complete" and p.data.tags[Tag.SANDBOX] == "in-process"
    assert p.data.params["method"] == "lbp-r1p8-4x4" and p.data.params["cfg.grid"] == "4" and p.data.params["seed"] == "3"
    assert "version.torch" in p.data.params and p.data.params["protocol"].startswith("loro")
    assert len(p.data.tags[Tag.CODE_HASH]) == 10 and p.data.params["code_hash"] == p.data.tags[Tag.CODE_HASH]
    s = Store(runs)
    folds = s.find(p.info.experiment_id, **{Tag.ROLE: record.FOLD})
    assert sorted(r.data.tags[Tag.SUBJECT] for r in folds) == ["a", "b", "c"]
    assert all(r.data.tags[Tag.PARENT] == p.info.run_id for r in folds)
    (pred_file,) = list((runs / "predictions").rglob("*.csv"))
    ds = load_dataset(data)
    assert ds.fingerprint in str(pred_file.parent) and "lbp-r1p8-4x4" in pred_file.name and p.data.tags[Tag.CODE_HASH] in pred_file.name
    preds = pd.read_csv(pred_file, dtype={"subject": str})
    assert list(preds.columns[:4]) == ["image", "subject", "y_true", "y_pred"] and len(preds) == 24
    sc = score(preds["y_true"], preds["y_pred"], preds["subject"])
    assert p.data.metrics["pooled_f1"] == pytest.approx(sc["pooled"]["f1"])
    assert p.data.metrics["pooled_accuracy"] == pytest.approx(sc["pooled"]["accuracy"])
    assert {"pose_frontal_f1", "pose_extreme_accuracy"} <= set(p.data.metrics)
    arts = {a.path for a in s.client.list_artifacts(p.info.run_id)}
    assert {"predictions.csv", "score.json", "per_subject.csv", "confusion_matrix.png"} <= arts
    # a second identical run is not redone
    assert main(["run", "--data", str(data), "--methods", "lbp-r1p8-4x4", "--runs-dir", str(runs), "--quiet", "--seed", "3"]) == 0
    assert len(s.find(p.info.experiment_id, **{Tag.ROLE: record.FOLD})) == 3


def test_kill_9_then_resume_finishes_only_missing_folds(env):
    root, e = env
    runs = root / "runs"
    args = [sys.executable, "-m", "ratspain_bench", "run", "--data", str(root / "data"), "--methods", "counting", "--runs-dir", str(runs), "--quiet"]
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
    (parent,) = parents(runs, "data")
    assert parent.data.tags[Tag.STATUS] == "running"  # the killed run is not counted as complete
    assert "pooled_f1" not in parent.data.metrics
    r = subprocess.run(args, env=e, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert log.read_text().split() == ["a", "b", "c", "c"]  # folds a and b were not redone
    (parent,) = parents(runs, "data")
    assert parent.data.tags[Tag.STATUS] == "complete"
    s = Store(runs)
    complete = [x for x in s.find(parent.info.experiment_id, **{Tag.ROLE: record.FOLD}) if x.data.tags[Tag.STATUS] == "complete"]
    assert sorted(x.data.tags[Tag.SUBJECT] for x in complete) == ["a", "b", "c"]
    preds = pd.read_csv(next((runs / "predictions").rglob("*.csv")))
    assert len(preds) == 24 and preds["image"].is_unique


def test_edited_code_reruns_and_unchanged_code_reruns_nothing(env):
    """Results are keyed by the code: an edit to method.py re-runs every fold; a rerun with no change runs none."""
    root, _ = env
    runs, log = root / "runs", root / "fits.log"
    first = api.run(["counting"], str(root / "data"), runs_dir=runs)
    assert first.table["status"].tolist() == ["complete"] and log.read_text().split() == ["a", "b", "c"]
    again = api.run(["counting"], str(root / "data"), runs_dir=runs)
    assert log.read_text().split() == ["a", "b", "c"] and again.results[0].skipped
    method = root / "submissions" / "counting" / "method.py"
    method.write_text(method.read_text().replace("np.clip(s / 255, 0, 1)", "np.clip(s / 256, 0, 1)"))
    edited = api.run(["counting"], str(root / "data"), runs_dir=runs)
    assert log.read_text().split() == ["a", "b", "c"] * 2
    assert edited.results[0].code_hash != first.results[0].code_hash and not edited.results[0].skipped
    assert edited.table["config_hash"].tolist() == first.table["config_hash"].tolist()
    assert {p.data.tags[Tag.CODE_HASH] for p in parents(runs, "data")} == {first.results[0].code_hash, edited.results[0].code_hash}
    board = api.leaderboard(None, runs)[0]  # two rows, never merged: one per code
    assert sorted(r.code_hash for r in board.ranked) == sorted({first.results[0].code_hash, edited.results[0].code_hash})


def test_two_datasets_with_one_folder_name_never_share_results(isolated):
    """`faces/` in two places: each run scores its own dataset (the fingerprint keys every output)."""
    root = isolated
    a = make_dataset(root / "one" / "faces", seed=0)
    b = make_dataset(root / "two" / "faces", subjects=("a", "b", "c", "d"), seed=5)
    runs = root / "runs"
    ra = api.run(["lbp-r1p8-4x4"], str(a), runs_dir=runs)
    rb = api.run(["lbp-r1p8-4x4"], str(b), runs_dir=runs)
    ra2 = api.run(["lbp-r1p8-4x4"], str(a), runs_dir=runs)
    assert ra2.results[0].skipped and ra2.results[0].score == ra.results[0].score
    assert set(rb.predictions["subject"]) == {"a", "b", "c", "d"} and set(ra2.predictions["subject"]) == {"a", "b", "c"}
    assert len(list((runs / "predictions").iterdir())) == 2


def test_two_configs_of_one_method_keep_their_own_numbers(isolated):
    root = isolated
    data = make_dataset(root / "data", per_subject=12)
    runs = root / "runs"
    low = api.run(["lbp-r1p8-8x8"], str(data), runs_dir=runs, set={"C": "0.001"})
    default = api.run(["lbp-r1p8-8x8"], str(data), runs_dir=runs)
    direct = api.run(["lbp-r1p8-8x8"], str(data), runs_dir=root / "fresh")
    assert default.results[0].config_hash != low.results[0].config_hash
    assert default.results[0].score == direct.results[0].score
    assert default.results[0].predictions != low.results[0].predictions


def test_jobs_2_uses_the_same_dataset_object(isolated):
    """Regression: worker processes once reloaded the built-in replica when --data was not passed through."""
    root = isolated
    ds = api.load_dataset(str(make_dataset(root / "data", subjects=("a", "b", "c", "d"))))
    one = api.run(["lbp-r1p8-4x4"], ds, runs_dir=root / "r1")
    two = api.run(["lbp-r1p8-4x4"], ds, runs_dir=root / "r2", jobs=2)
    cols = ["image", "subject", "y_true", "y_pred", "score"]
    assert one.predictions[cols].sort_values("image").reset_index(drop=True).equals(two.predictions[cols].sort_values("image").reset_index(drop=True))


def test_unknown_method_exits_2_with_hint(tmp_path, capsys):
    assert main(["run", "--data", str(make_dataset(tmp_path / "d")), "--methods", "lbp-r1p8-4x5", "--runs-dir", str(tmp_path)]) == 2
    assert "did you mean lbp-r1p8-4x4" in capsys.readouterr().err


def test_labels_only_dataset_refuses_training(tmp_path, capsys):
    import json

    (tmp_path / "labels.json").write_text(json.dumps({
        "x1.png": [{"AnimalNumber": "1", "GrimaceScale": "0"}], "x2.png": [{"AnimalNumber": "2", "GrimaceScale": "1"}],
        "x3.png": [{"AnimalNumber": "1", "GrimaceScale": "2"}], "x4.png": [{"AnimalNumber": "2", "GrimaceScale": "0"}]}))
    assert main(["run", "--data", str(tmp_path / "labels.json"), "--methods", "lbp-r1p8-4x4", "--runs-dir", str(tmp_path / "r")]) == 2
    assert "labels only" in capsys.readouterr().err


def test_weights_and_finetune_reach_only_methods_that_declare_them():
    from ratspain_bench.errors import InputError
    from ratspain_bench.evaluation.configure import configure

    lbp = configure(api.get_method("lbp-r1p8-4x4"), "quick", where_declared={"weights": "none", "finetune": "full"})
    assert "weights" not in lbp
    deep = configure(api.get_method("painseeker"), "quick", where_declared={"weights": "none", "finetune": "full"})
    assert (deep["weights"], deep["finetune"]) == ("none", "full")
    lite = configure(api.get_method("painseeker-lite0"), "quick")
    assert lite["weights"] == "lite0" and lite["finetune"] == "frozen"  # the row's own weights, the quick profile's mode
    with pytest.raises(InputError, match="no parameter 'weights'"):  # --set still applies to every method
        configure(api.get_method("lbp-r1p8-4x4"), "quick", {"weights": "none"})


def test_feature_cache_key_holds_every_feature_setting():
    """The frozen-feature cache space changes with each setting that changes a feature's value (flip included)."""
    from dataclasses import replace

    from ratspain_bench.methods.base import Context

    spec = api.get_method("timm:resnet10t")
    base = spec.config("quick", weights="none")
    space = lambda cfg: spec.load()(cfg, Context(device="cpu")).feature_cache().space  # noqa: E731
    changes = {"model": "resnet18", "weights": "lite0", "image_size": 240, "crop_size": 200, "test_crop": "resize", "flip": False,
               "channels_last": False}
    seen = {space(base)}
    for name, value in changes.items():
        s = space(replace(base, **{name: value}))
        assert s not in seen, name
        seen.add(s)
    assert space(replace(base, epochs=3, lr=0.5, views=9, standardize=False)) == space(base)  # head settings: same features


def test_syntax_error_in_a_trusted_submission_is_one_line(env, capsys):
    root, _ = env
    (root / "submissions" / "counting" / "method.py").write_text("def broken(:\n")
    assert main(["run", "--data", str(root / "data"), "--methods", "counting", "--runs-dir", str(root / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "syntax error" in err and "method.py:1" in err
