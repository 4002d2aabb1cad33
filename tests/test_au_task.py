"""The au task end to end: a method that returns AU grades, run under LORO in process and sandboxed,
its predictions file, its score against scikit-learn, its MLflow record, and the rules it must keep."""
import json
import textwrap

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score
from tinydata import make_dataset

from ratspain_bench import api
from ratspain_bench.cli import main
from ratspain_bench.errors import InputError
from ratspain_bench.evaluation import record
from ratspain_bench.evaluation.predictions import read_predictions
from ratspain_bench.evaluation.record import Store, Tag
from ratspain_bench.methods import registry as reg
from ratspain_bench.tasks import AUS, derived_label

GRADING_METHOD = '''
from dataclasses import dataclass
import numpy as np
from ratspain_bench.methods import Method, Predictions

@dataclass(frozen=True)
class Config:
    image_size: int = 32
    bad: str = ""

class Grading(Method):
    """Grades every AU from the brightness of the face's centre, against the training rats' grades."""
    Config = Config
    family = "grading"
    tasks = ("binary", "au")

    def fit(self, train):
        self.task = self.context.task
        b = self.brightness(train.images)
        self.cut = float(np.median(b))
        if self.task == "au":  # the grade most often given to bright faces, per AU (blanks left out)
            self.bright = {}
            for au, g in train.au.items():
                keep = (g >= 0) & (b > self.cut)
                self.bright[au] = int(np.bincount(g[keep], minlength=3)[1:].argmax() + 1) if keep.any() else 1

    @staticmethod
    def brightness(images):
        n = images.shape[1]
        return images[:, n // 3: 2 * n // 3, n // 3: 2 * n // 3].mean(axis=(1, 2, 3))

    def predict(self, test):
        b = self.brightness(test.images)
        bright = b > self.cut
        p = np.clip(b / 255, 0, 1)
        if self.task != "au":
            return Predictions(bright.astype(int), p)
        au = {a: np.where(bright, self.bright[a], 0) for a in self.bright}
        if self.config.bad == "grade3":
            au["ears"] = au["ears"] + 3
        if self.config.bad == "missing":
            au.pop("nose")
        return Predictions(bright.astype(int), p, au=au)
'''

BINARY_ONLY = '''
from dataclasses import dataclass
import numpy as np
from ratspain_bench.methods import Method, Predictions

@dataclass(frozen=True)
class Config:
    image_size: int = 32

class Plain(Method):
    Config = Config
    family = "plain"
    def fit(self, train):
        pass
    def predict(self, test):
        return Predictions(np.zeros(len(test), int), np.zeros(len(test)))
'''


def add_grades(root):
    """AU consensus grades consistent with each row's level (one AU blank on a few rows)."""
    m = pd.read_csv(root / "manifest.csv")
    rng = np.random.default_rng(1)
    for j, a in enumerate(AUS):
        m[f"au_{a}"] = m["level"]
    m.loc[m.index % 5 == 1, "au_whiskers"] = np.nan  # three accepted AUs: still a level
    m["au_ears"] = np.where(rng.random(len(m)) < 0.2, np.clip(m["level"] + 1, 0, 2), m["au_ears"])
    grades = m[[f"au_{a}" for a in AUS]].fillna(-1).to_numpy(int)
    m["level"] = np.where(grades.max(1) >= 0, [int(np.floor(np.mean(g[g >= 0]) + 0.5)) for g in grades], m["level"])
    for r in range(1, 6):  # five raters who agree with the consensus but for rater 5 on the ears now and then
        for a in AUS:
            m[f"rater_{r}_au_{a}"] = m[f"au_{a}"]
    m["rater_5_au_ears"] = np.where(m.index % 3 == 0, 2 - m["au_ears"].fillna(1), m["au_ears"])
    m.to_csv(root / "manifest.csv", index=False, float_format="%.0f")
    return m


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("RATSPAIN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(reg, "_default", [])
    make_dataset(tmp_path / "data")
    add_grades(tmp_path / "data")
    for name, code, cls in (("grading", GRADING_METHOD, "Grading"), ("plain", BINARY_ONLY, "Plain")):
        sub = tmp_path / "submissions" / name
        sub.mkdir(parents=True)
        (sub / "submission.toml").write_text(f'name = "{name}"\nentry_point = "method:{cls}"\n')
        (sub / "method.py").write_text(textwrap.dedent(code))
    monkeypatch.setenv("RATSPAIN_SUBMISSIONS_DIR", str(tmp_path / "submissions"))
    monkeypatch.setenv("RATSPAIN_TRUST", "grading,plain")
    return tmp_path


def run(env, task="au", methods=("grading",), **kw):
    return api.run(list(methods), str(env / "data"), runs_dir=env / "runs", jobs=1, task=task, **kw)


def test_au_task_scored_end_to_end_against_sklearn(env):
    res = run(env)
    assert not res.failed, res.failed
    preds = res.predictions
    truth = pd.read_csv(env / "data" / "manifest.csv").set_index("path")
    for a in AUS:
        want = truth.loc[preds["image"], f"au_{a}"].to_numpy()
        got = preds[f"y_true_au_{a}"].to_numpy(dtype=float)
        np.testing.assert_array_equal(np.nan_to_num(got, nan=-1), np.nan_to_num(want, nan=-1))
    grades = preds[[f"y_pred_au_{a}" for a in AUS]].to_numpy(int)
    np.testing.assert_array_equal(preds["y_pred"], derived_label(grades))  # the label scored is the derived one
    units = res.results[0].score["action_units"]
    for a in AUS:
        keep = preds[f"y_true_au_{a}"].notna().to_numpy()
        y, p = preds[f"y_true_au_{a}"].to_numpy(dtype=float)[keep].astype(int), preds[f"y_pred_au_{a}"].to_numpy(int)[keep]
        assert units["au"][a]["n"] == keep.sum()
        assert units["au"][a]["qwk"] == pytest.approx(cohen_kappa_score(y, p, weights="quadratic", labels=[0, 1, 2]))
    # the same file read back and scored by `score` gives the same numbers
    path = res.results[0].predictions
    assert api.score(path)["action_units"] == units
    assert set(read_predictions(path).table.columns) >= {f"y_pred_au_{a}" for a in AUS}


def test_au_run_is_recorded_apart_from_binary(env):
    b, a = run(env, task="binary"), run(env)
    assert b.results[0].predictions != a.results[0].predictions
    assert "action_units" not in b.results[0].score
    s = Store(env / "runs")
    exp = s.client.get_experiment_by_name("ratspain/data").experiment_id
    parents = {r.data.tags.get(Tag.TASK): r for r in s.find(exp, **{Tag.ROLE: record.PARENT})}
    assert set(parents) == {"binary", "au"}
    au = parents["au"].data
    assert au.params["task"] == "au" and "rgs_icc_a1" in au.metrics and "au_orbital_qwk" in au.metrics
    assert not any(k.startswith(("au_", "ceiling_")) for k in parents["binary"].data.metrics)
    # the raters' own agreement: perfect but for rater 5's ears
    assert au.metrics["ceiling_au_orbital_alpha"] == pytest.approx(1.0) and au.metrics["ceiling_au_orbital_qwk"] == pytest.approx(1.0)
    assert au.metrics["ceiling_au_ears_alpha"] < 1.0
    again = run(env)  # complete: read back, not recomputed
    assert again.results[0].skipped and again.results[0].score == a.results[0].score
    records = {r.task: r for r in record.fetch_runs(record.tracking_uri(env / "runs"))}
    assert set(records) == {"binary", "au"} and "y_pred_au_ears" in records["au"].predictions.columns


def test_method_without_the_task_is_refused_before_any_work(env):
    with pytest.raises(InputError, match="plain: does not support the au task"):
        run(env, methods=("grading", "plain"))
    assert not (env / "runs" / "jobs").exists()


@pytest.mark.parametrize("bad,rule", [("grade3", "AU grades must be 0, 1 or 2"), ("missing", "lacks nose")])
def test_invalid_au_output_fails_the_method(env, bad, rule):
    res = run(env, set={"bad": bad})
    assert res.failed and rule in res.failed[0].error


def test_sandboxed_method_in_the_au_task(env, monkeypatch):
    """The au grades cross the sandbox both ways: training grades in, predicted grades out."""
    from ratspain_bench.evaluation.sandbox import unavailable

    if unavailable():
        pytest.skip(f"no sandbox here: {unavailable()}")
    trusted = run(env).results[0].score
    monkeypatch.setenv("RATSPAIN_TRUST", "")
    res = api.run(["grading"], str(env / "data"), runs_dir=env / "runs-sandboxed", jobs=1, task="au")
    assert not res.failed, res.failed
    assert res.results[0].score["action_units"] == trusted["action_units"]


def test_cli_task_au_and_methods_filter(env, capsys):
    assert main(["run", "--methods", "grading", "--task", "au", "--data", str(env / "data"), "--runs-dir", str(env / "runs"),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "RGS ICC(A,1)" in out and "grading" in out
    assert main(["methods", "--task", "au", "--format", "json"]) == 0
    names = {m["name"] for m in json.loads(capsys.readouterr().out)["methods"]}
    assert "plain" not in names and "grading" in names


def test_trained_au_model_grades_new_faces(env):
    """`train --task au`: the saved model grades the four AUs of new images as the fitted method does in process,
    its card quotes the au run's evidence, and the MLflow pyfunc path agrees."""
    import mlflow.pyfunc

    from ratspain_bench.data import load_dataset
    from ratspain_bench.data.cache import load_images
    from ratspain_bench.evaluation.fold import au_grades, build
    from ratspain_bench.methods.base import Context, TestSet, TrainSet
    from ratspain_bench.methods.registry import get_method

    data, out = env / "data", env / "model"
    model = api.train("lbp-r1p8-8x8", str(data), out=out, set={"image_size": 64}, task="au", evaluate=True, runs_dir=env / "runs")
    assert model.meta["task"] == "au" and model.meta["evidence_run"]
    assert "Action units" in (out / "MODEL_CARD.md").read_text()
    files = sorted(str(p) for p in (data / "images").glob("*.png"))
    scored = model.predict(files)
    assert {f"au_{a}" for a in AUS} <= set(scored.columns)

    ds = load_dataset(str(data))
    spec = get_method("lbp-r1p8-8x8")
    from ratspain_bench.evaluation.configure import configure

    method = build(spec, configure(spec, "quick", {"image_size": 64}), Context(task="au"))
    images = load_images(ds, 64)[0]
    g = au_grades(ds.table)
    method.fit(TrainSet(images, ds.table["label"].to_numpy(), ds.table["subject"].to_numpy(), ds.keys,
                        au={a: g[:, j] for j, a in enumerate(AUS)}))
    order = [ds.table.index[ds.table["file"] == f][0] for f in files]
    want = method.predict(TestSet(images[order], ds.table["subject"].to_numpy()[order], tuple(ds.keys[i] for i in order)))
    for a in AUS:
        np.testing.assert_array_equal(scored[f"au_{a}"].to_numpy(int), want.au[a])
    via_mlflow = mlflow.pyfunc.load_model(str(out)).predict(pd.DataFrame({"path": files}))
    for a in AUS:
        np.testing.assert_array_equal(via_mlflow[f"au_{a}"].to_numpy(int), want.au[a])
