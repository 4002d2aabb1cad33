"""`submit validate`: the template and the worked example pass; broken submissions (edits of the worked example)
fail with a line saying what to fix; prediction-only submissions are checked, scored and recorded for the leaderboard."""
import shutil
from pathlib import Path

import pandas as pd
import pytest
from tinydata import make_dataset

from ratspain_bench.cli import main
from ratspain_bench.methods import registry as reg

TEMPLATE = Path(__file__).resolve().parents[1] / "submissions" / "_template"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hog-logreg"  # HOG + logistic regression
PREDICT = "        return Predictions((prob >= 0.5).astype(int), prob)"


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("RATSPAIN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(reg, "_default", [])


def copy_example(tmp_path, name="my-method", edit=None, toml_edit=None) -> Path:
    dst = tmp_path / name
    shutil.copytree(EXAMPLE, dst)
    toml = (dst / "submission.toml").read_text().replace('name = "hog-logreg"', f'name = "{name}"')
    (dst / "submission.toml").write_text(toml_edit(toml) if toml_edit else toml)
    if edit:
        code = (dst / "method.py").read_text()
        new = edit(code)
        assert new != code
        (dst / "method.py").write_text(new)
    return dst


def validate(capsys, *args) -> tuple[int, str]:
    rc = main(["submit", "validate", *map(str, args)])
    return rc, capsys.readouterr().out


def line(out: str, check: str) -> str:
    found = [x for x in out.splitlines() if x.split(" ", 2)[1:2] == [check + ":"]]
    assert found, f"no line for {check} in:\n{out}"
    return found[0]


@pytest.mark.parametrize("folder", [TEMPLATE, EXAMPLE], ids=["template", "worked-example"])
def test_template_and_worked_example_are_valid(capsys, folder):
    rc, out = validate(capsys, folder)
    assert rc == 0, out
    for check in ("metadata.name", "metadata.licence", "import", "interface.shape", "interface.probabilities",
                  "interface.determinism", "loro.smoke", "loro.labels"):
        assert line(out, check).startswith("PASS")
    assert "VALID" in out


def test_the_template_is_minimal():
    """The template shows the interface and nothing more: NumPy only, a few lines."""
    code = (TEMPLATE / "method.py").read_text()
    imports = {line.split()[1].split(".")[0] for line in code.splitlines() if line.startswith(("import ", "from "))}
    assert imports <= {"__future__", "dataclasses", "numpy", "ratspain_bench"}, imports
    assert len([x for x in code.splitlines() if x.strip() and not x.lstrip().startswith("#")]) < 50


def test_missing_metadata_key(tmp_path, capsys):
    sub = copy_example(tmp_path, toml_edit=lambda t: t.replace('contact = "ada@example.org"', ""))
    rc, out = validate(capsys, sub)
    assert rc == 2
    assert line(out, "metadata.contact") .startswith("FAIL metadata.contact: missing required key 'contact' -> fix: add contact =")
    assert "INVALID" in out


def test_bad_metadata_types(tmp_path, capsys):
    sub = copy_example(tmp_path, toml_edit=lambda t: t.replace('authors = ["Ada Lovelace", "Charles Babbage"]', 'authors = "Ada"')
                        .replace('entry_point = "method:HogLogReg"', 'entry_point = "method.HogLogReg"'))
    rc, out = validate(capsys, sub)
    assert rc == 2
    assert "must be a list of strings" in line(out, "metadata.authors")
    assert 'module:Class' in line(out, "metadata.entry_point")


def test_import_error(tmp_path, capsys):
    sub = copy_example(tmp_path, edit=lambda c: c.replace("import numpy as np\n", "import numpy as np\nimport not_a_real_package_xyz\n", 1))
    rc, out = validate(capsys, sub)
    assert rc == 2
    msg = line(out, "import")
    assert msg.startswith("FAIL import: ModuleNotFoundError") and "not_a_real_package_xyz" in msg and "fix: install" in msg
    assert line(out, "interface").startswith("SKIP")


def test_wrong_predict_shape(tmp_path, capsys):
    sub = copy_example(tmp_path, edit=lambda c: c.replace(PREDICT, "        return Predictions((prob[:-1] >= 0.5).astype(int), prob[:-1])"))
    rc, out = validate(capsys, sub)
    assert rc == 2
    msg = line(out, "interface.shape")
    assert msg.startswith("FAIL") and "for 10 test images" in msg and "one per test image" in msg


def test_probabilities_outside_unit_interval(tmp_path, capsys):
    sub = copy_example(tmp_path, edit=lambda c: c.replace(PREDICT, "        return Predictions((prob >= 0.5).astype(int), 4 * prob - 2)"))
    rc, out = validate(capsys, sub)
    assert rc == 2
    msg = line(out, "interface.probabilities")
    assert msg.startswith("FAIL") and "probability of pain in [0, 1]" in msg


def test_nondeterministic_predictions(tmp_path, capsys):
    noisy = ("        prob = np.clip(prob + np.random.default_rng().uniform(-0.3, 0.3, len(prob)), 0, 1)\n" + PREDICT)
    sub = copy_example(tmp_path, edit=lambda c: c.replace(PREDICT, noisy))
    rc, out = validate(capsys, sub)
    assert rc == 2
    msg = line(out, "interface.determinism")
    assert msg.startswith("FAIL") and "disagree" in msg and "self.context.seed" in msg


def test_method_reading_the_manifest_fails(tmp_path, capsys, monkeypatch):
    """A method that opens the dataset's manifest (where the test labels are) fails: the sandbox shows it no data file."""
    import ratspain_bench.submit.code as code

    real = code.make_tiny_replica
    sub = tmp_path / "my-method"

    def tiny(out, seed=0, size=64):
        (sub / "where.txt").write_text(str(out))  # tell the cheating method where the data is (its own folder is visible)
        return real(out, seed, size)

    monkeypatch.setattr(code, "make_tiny_replica", tiny)
    sneaky = ("        from pathlib import Path\n        here = Path(__file__).parent\n"
              "        open((here / 'where.txt').read_text() + '/manifest.csv').read()\n" + PREDICT)
    copy_example(tmp_path, edit=lambda c: c.replace(PREDICT, sneaky))
    rc, out = validate(capsys, sub)
    assert rc == 2
    msg = line(out, "loro.data_access")
    assert msg.startswith("FAIL") and "read the dataset from disk" in msg and "TrainSet/TestSet" in msg


def test_time_limit(tmp_path, capsys):
    sub = copy_example(tmp_path, edit=lambda c: c.replace("        labels = np.asarray(train.labels, dtype=int)\n",
                                                           "        import time\n        time.sleep(600)\n        labels = np.asarray(train.labels, dtype=int)\n"))
    rc, out = validate(capsys, sub, "--time-limit", "10")
    assert rc == 2
    failed = [x for x in out.splitlines() if x.startswith("FAIL") and "time limit of 10 s exceeded" in x]
    assert failed and "-> fix:" in failed[0], out


# ---------------------------------------------------------------- prediction-only submissions


def _predictions(data: Path) -> pd.DataFrame:
    m = pd.read_csv(data / "manifest.csv", dtype={"subject": str})
    return pd.DataFrame({"image": m["path"], "subject": m["subject"], "y_pred": (m["level"] > 0).astype(int), "score": 0.7})


def _prediction_folder(tmp_path, data, name="outside-lab", flip=3, fingerprint=True) -> Path:
    from ratspain_bench.data import load_dataset

    folder = tmp_path / f"sub-{name}-{flip}"
    folder.mkdir()
    p = _predictions(data)
    p.loc[p.index[:flip], "y_pred"] = 1 - p.loc[p.index[:flip], "y_pred"]
    p.to_csv(folder / "predictions.csv", index=False)
    fp = f'dataset_fingerprint = "{load_dataset(data).fingerprint}"\n' if fingerprint else ""
    (folder / "submission.toml").write_text(f'kind = "predictions"\nname = "{name}"\nauthors = ["B. Curie"]\ncontact = "b@lab.org"\n'
                                            f'paper = "unpublished"\nlicence = "CC-BY-4.0"\n{fp}')
    return folder


def test_predictions_only_checked_without_scores_then_recorded(tmp_path, capsys):
    data = make_dataset(tmp_path / "data")
    folder = _prediction_folder(tmp_path, data)
    runs = tmp_path / "runs"
    rc, out = validate(capsys, folder, "--data", data, "--format", "json")
    import json

    report = json.loads(out)
    assert rc == 0 and report["valid"] and "score" not in report
    assert not any(w in out for w in ("pooled", "tp", "accuracy", "F1"))  # nothing that leaks the labels
    rc, out = validate(capsys, folder, "--data", data, "--record", "--runs-dir", runs)
    assert rc == 0, out
    assert line(out, "predictions.images").startswith("PASS") and line(out, "record").startswith("PASS")
    assert line(out, "dataset.fingerprint").startswith("PASS")
    from ratspain_bench.board.collect import fetch_runs, resolve_tracking_uri

    (rec,) = fetch_runs(resolve_tracking_uri(runs))
    assert rec.source == "predictions-only" and rec.status == "complete" and rec.method == "outside-lab"
    assert rec.complete_subjects == {"a", "b", "c"} and len(rec.predictions) == 24
    assert rec.metrics["pooled_accuracy"] == pytest.approx(21 / 24)
    # recording the same file again adds nothing
    rc, out = validate(capsys, folder, "--data", data, "--record", "--runs-dir", runs)
    assert rc == 0 and "already recorded" in line(out, "record")
    assert len(fetch_runs(resolve_tracking_uri(runs))) == 1
    # other predictions under the same name: refused, unless --replace
    other = _prediction_folder(tmp_path, data, flip=5)
    rc, out = validate(capsys, other, "--data", data, "--record", "--runs-dir", runs)
    assert rc == 2 and "--replace" in line(out, "record")
    rc, out = validate(capsys, other, "--data", data, "--record", "--replace", "--runs-dir", runs)
    assert rc == 0, out
    board = __import__("ratspain_bench").leaderboard(None, runs)[0]
    (entry,) = board.predictions_only
    assert not board.ranked and entry.rank is None and entry.pooled["accuracy"] == pytest.approx(19 / 24)


def test_predictions_only_refusals(tmp_path, capsys):
    """No fingerprint, another dataset's fingerprint, a built-in's name, a bare CSV: never recorded."""
    data = make_dataset(tmp_path / "data")
    runs = tmp_path / "runs"
    rc, out = validate(capsys, _prediction_folder(tmp_path, data, fingerprint=False), "--data", data, "--record", "--runs-dir", runs)
    assert rc == 2 and "dataset_fingerprint" in line(out, "dataset.fingerprint")
    same_names = make_dataset(tmp_path / "other", seed=9)  # the same image names, other images and labels
    rc, out = validate(capsys, _prediction_folder(tmp_path, same_names, name="xx"), "--data", data, "--record", "--runs-dir", runs)
    assert rc == 2 and "not data" in line(out, "dataset.fingerprint")
    rc, out = validate(capsys, _prediction_folder(tmp_path, data, name="yy"), "--data", data, "--record", "--name", "painseeker",
                       "--runs-dir", runs)
    assert rc == 2 and "registered method" in line(out, "record")
    _predictions(data).to_csv(tmp_path / "bare.csv", index=False)
    rc, out = validate(capsys, tmp_path / "bare.csv", "--data", data, "--record", "--runs-dir", runs)
    assert rc == 2 and "bare CSV" in line(out, "record")
    from ratspain_bench.errors import InputError

    if (runs / "mlflow.db").exists():
        with pytest.raises(InputError, match="no ratspain runs"):
            __import__("ratspain_bench").leaderboard(None, runs)


def test_licence_must_be_a_real_spdx_identifier(tmp_path, capsys):
    sub = copy_example(tmp_path, toml_edit=lambda t: t.replace('licence = "Apache-2.0"', 'licence = "MIT-ish"'))
    rc, out = validate(capsys, sub)
    assert rc == 2 and line(out, "metadata.licence").startswith("FAIL")


def test_predictions_for_another_dataset_warn(tmp_path, capsys):
    data = make_dataset(tmp_path / "data")
    folder = tmp_path / "sub"
    folder.mkdir()
    _predictions(data).to_csv(folder / "predictions.csv", index=False)
    (folder / "submission.toml").write_text('kind = "predictions"\nname = "x"\nauthors = ["A"]\ncontact = "a@b.org"\n'
                                            'paper = "-"\nlicence = "MIT"\ndataset = "ratspain-real"\n')
    rc, out = validate(capsys, folder, "--data", data)
    msg = line(out, "dataset")
    assert msg.startswith("WARN") and "'ratspain-real'" in msg and "-> fix: pass --data" in msg


@pytest.mark.parametrize("breakage,check,text", [
    (lambda p: p.iloc[1:], "predictions.images", "missing"),
    (lambda p: pd.concat([p, p.iloc[:1]]), "predictions.format", "listed twice"),
    (lambda p: p.assign(image=["x.png"] + list(p["image"][1:])), "predictions.images", "unknown image"),
    (lambda p: p.assign(subject=["b"] + list(p["subject"][1:])), "predictions.subjects", "another subject"),
    (lambda p: p.assign(score=1.5), "predictions.format", "probability"),
    (lambda p: p.drop(columns=["y_pred"]), "predictions.format", "missing column"),
])
def test_predictions_only_broken(tmp_path, capsys, breakage, check, text):
    data = make_dataset(tmp_path / "data")
    breakage(_predictions(data)).to_csv(tmp_path / "p.csv", index=False)
    rc, out = validate(capsys, tmp_path / "p.csv", "--data", data)
    assert rc == 2
    msg = line(out, check)
    assert msg.startswith("FAIL") and text in msg and "-> fix:" in msg


def test_installed_plugin_module_is_validated(tmp_path, capsys, monkeypatch):
    """A plugin's submission.toml needs no code beside it: entry_point names an installed module."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "hog_plugin_demo.py").write_text((EXAMPLE / "method.py").read_text())
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))
    folder = tmp_path / "plugin"
    folder.mkdir()
    toml = (EXAMPLE / "submission.toml").read_text().replace('name = "hog-logreg"', 'name = "hog-plugin"').replace(
        'entry_point = "method:HogLogReg"', 'entry_point = "hog_plugin_demo:HogLogReg"')
    (folder / "submission.toml").write_text(toml)
    rc, out = validate(capsys, folder)
    assert rc == 0, out
    assert "hog_plugin_demo:HogLogReg" in line(out, "import")
