"""`train` and `predict`: a method fitted on every animal, saved as an MLflow pyfunc model with its card, scoring
new images the way the same fitted method does in-process, through the CLI, `rb.load_model` and MLflow alike."""
import json
import shutil
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from tinydata import TINY_DEEP, make_dataset

import ratspain_bench as rb
from ratspain_bench.cli import main
from ratspain_bench.data import load_dataset
from ratspain_bench.data.cache import decode, file_key, load_images
from ratspain_bench.errors import InputError
from ratspain_bench.evaluation.configure import configure
from ratspain_bench.evaluation.fold import build
from ratspain_bench.evaluation.record import Store, Tag
from ratspain_bench.methods import registry as reg
from ratspain_bench.methods.base import Context, TestSet, TrainSet
from ratspain_bench.model.saved import CodeChangedWarning, SyntheticDataWarning

pytestmark = pytest.mark.usefixtures("one_thread")
LBP = "lbp-r1p8-8x8"
SMALL = {"image_size": "64"}  # LBP on 64 px faces: the same code path, a fraction of the time


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("model")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RATSPAIN_CACHE_DIR", str(root / "cache"))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.setattr(reg, "_default", [])
        yield root, make_dataset(root / "data"), root / "runs"


@pytest.fixture(scope="module")
def lbp(env):
    """LORO of the LBP row first (the card's evidence), then the model trained with the same config."""
    root, data, runs = env
    rb.run([LBP], str(data), runs_dir=runs, set=SMALL, jobs=1)
    model = rb.train(LBP, str(data), out=root / "lbp", set=SMALL, runs_dir=runs)
    return root / "lbp", model


def images_of(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


def in_process(name: str, data: Path, overrides: dict, files: list[Path]):
    """The method fitted on every image and asked about `files`, in this process (no saved model involved)."""
    spec = rb.get_method(name)
    params = configure(spec, "quick", overrides)
    ds = load_dataset(data)
    t = ds.table
    images = load_images(ds, int(params["image_size"]))[0]
    method = build(spec, params, Context(seed=0, device="cpu"))
    method.fit(TrainSet(np.asarray(images), t["label"].to_numpy(), t["subject"].to_numpy(), ds.keys))
    size = int(params["image_size"])
    return method.predict(TestSet(np.stack([decode(f, size) for f in files]), np.full(len(files), "x"),
                                  tuple(file_key(f) for f in files)))


def predict_cli(model, *inputs, out=None, extra=()):
    args = ["predict", str(model), *map(str, inputs), "--quiet", *extra]
    return main(args + (["--out", str(out)] if out else []))


def test_cli_labels_equal_the_in_process_fit_and_all_paths_agree(env, lbp, tmp_path):
    root, data, runs = env
    folder, trained = lbp
    assert predict_cli(folder, data / "images", out=tmp_path / "scores.csv") == 0
    csv = pd.read_csv(tmp_path / "scores.csv")
    assert list(csv.columns[:3]) == ["image", "pain_probability", "pain"] and "error" in csv.columns
    ref = in_process(LBP, data, SMALL, images_of(data / "images"))
    assert csv["pain"].tolist() == ref.labels.tolist()
    assert np.allclose(csv["pain_probability"], ref.scores, atol=1e-6)
    paths = [str(p) for p in images_of(data / "images")]
    a = trained.predict(paths)
    b = rb.load_model(folder).predict(paths)
    c = mlflow.pyfunc.load_model(str(folder)).predict(pd.DataFrame({"path": paths}))
    for other in (b, c):
        pd.testing.assert_frame_equal(a, other, check_dtype=False)
    assert a["pain"].tolist() == csv["pain"].tolist()


def test_card_has_the_loro_evidence_of_the_same_config_and_code(env, lbp):
    root, data, runs = env
    folder, model = lbp
    s = Store(runs)
    exp = s.client.get_experiment_by_name(f"ratspain/{data.name}").experiment_id
    (parent,) = s.find(exp, **{Tag.ROLE: "parent"})
    assert model.meta["config_hash"] == parent.data.tags[Tag.CONFIG_HASH]
    assert model.meta["code_hash"] == parent.data.tags[Tag.CODE_HASH]
    card = (folder / "MODEL_CARD.md").read_text()
    assert parent.info.run_id in card and "bootstrap over rats" in card and "Brier score" in card
    assert "| a |" in card and "frontal" in card and "synthetic" not in card.lower()
    assert f"{parent.data.metrics['pooled_f1']:.4f}" in card
    assert (folder / "reliability.png").is_file() and (folder / "MLmodel").is_file()
    meta = json.loads((folder / "artifacts" / "ratspain" / "model.json").read_text())
    assert meta["dataset"]["per_subject"]["a"]["total"] == 8 and meta["dataset"]["fingerprint"] == load_dataset(data).fingerprint
    arts = {a.path for a in s.client.list_artifacts(meta["mlflow_run"])}
    assert {"MODEL_CARD.md", "model"} <= arts


def test_bad_images_get_a_row_error_and_the_rest_is_scored(env, lbp, tmp_path, capsys):
    root, data, runs = env
    folder, _ = lbp
    good = images_of(data / "images")[:2]
    d = tmp_path / "in"
    d.mkdir()
    for f in good:
        shutil.copy(f, d / f.name)
    (d / "truncated.png").write_bytes(good[0].read_bytes()[:200])
    (d / "garbage.jpg").write_bytes(b"not an image at all")
    Image.open(good[0]).convert("L").save(d / "gray.png")
    Image.open(good[1]).convert("RGBA").save(d / "rgba.png")
    assert predict_cli(folder, d, out=tmp_path / "s.csv") == 0
    err = capsys.readouterr().err
    assert "2 of 6 images could not be read" in err
    s = pd.read_csv(tmp_path / "s.csv").set_index("image")
    s["error"] = s["error"].fillna("")
    assert {Path(i).name for i in s.index[s["error"] != ""]} == {"truncated.png", "garbage.jpg"}
    scored = s[s["error"] == ""]
    assert {Path(i).name for i in scored.index} == {"gray.png", "rgba.png", *(f.name for f in good)}
    assert scored["pain"].isin([0, 1]).all() and scored["pain_probability"].between(0, 1).all()
    assert s.loc[s["error"] != "", "pain_probability"].isna().all()


def test_exit_2_on_nothing_to_score_and_on_bad_inputs(env, lbp, tmp_path, capsys):
    folder, _ = lbp
    (tmp_path / "empty").mkdir()
    out = tmp_path / "never.csv"
    assert predict_cli(folder, tmp_path / "empty", out=out) == 2
    assert "no images found" in capsys.readouterr().err and not out.exists()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"\x89PNG broken")
    assert predict_cli(folder, tmp_path / "bad", out=out) == 2
    assert "none of the 1 images could be read" in capsys.readouterr().err
    assert predict_cli(folder, tmp_path / "missing.png") == 2
    assert "missing.png: no such file" in capsys.readouterr().err
    (tmp_path / "m1.csv").write_text("file,subject\nx.png,1\n")
    assert predict_cli(folder, tmp_path / "m1.csv") == 2
    assert f"{tmp_path / 'm1.csv'}:1: a manifest needs a `path` column" in capsys.readouterr().err
    (tmp_path / "m2.csv").write_text("path\nx.png\n\"\"\n")
    assert predict_cli(folder, tmp_path / "m2.csv") == 2
    assert f"{tmp_path / 'm2.csv'}:3: empty path" in capsys.readouterr().err
    assert predict_cli(tmp_path / "empty", tmp_path / "m2.csv") == 2
    assert "not a model folder" in capsys.readouterr().err


def test_a_model_from_other_code_loads_with_a_warning_and_an_unknown_format_is_refused(lbp, tmp_path, capsys):
    folder, _ = lbp
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    meta_file = old / "artifacts" / "ratspain" / "model.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "code_hash": "0123456789"}))
    with pytest.warns(CodeChangedWarning, match=f"trained with code 0123456789 .* this installation's is {meta['code_hash']}"):
        model = rb.load_model(old)
    assert len(model.predict(images_of(Path(meta["dataset"]["source"]).parent / "images")[:3])) == 3
    meta_file.write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(InputError, match="model format 99, this ratspain_bench reads format 1"):
        rb.load_model(old)
    assert predict_cli(old, meta["dataset"]["source"]) == 2
    assert "model format 99" in capsys.readouterr().err


def test_synthetic_model_says_so_everywhere_and_registers(env, tmp_path, capsys):
    root, _, runs = env
    counts = {s: {"no_pain": 3, "moderate": 2, "severe": 1} for s in ("1", "2")}
    manifest = rb.synth(tmp_path / "replica", size=48, counts=counts, jobs=1)
    out = tmp_path / "m"
    assert main(["train", "--method", LBP, "--data", str(manifest.parent), "--set", "image_size=64", "--out", str(out),
                 "--runs-dir", str(runs), "--register", "rat-pain-test", "--quiet"]) == 0
    assert "WARNING: trained on the synthetic replica" in capsys.readouterr().out
    card = (out / "MODEL_CARD.md").read_text()
    assert "WARNING: synthetic" in card and "must not be used on real animals" in card and "**None.**" in card
    assert "synthetic: true" in (out / "MLmodel").read_text()
    assert predict_cli(out, manifest, out=tmp_path / "s.csv") == 0
    assert "must not be used on real animals" in capsys.readouterr().err
    s = pd.read_csv(tmp_path / "s.csv")
    assert len(s) == 12 and s["warning"].str.contains("synthetic replica").all()
    with pytest.warns(SyntheticDataWarning):
        a = rb.load_model(out).predict(manifest)
    for uri in ("models:/rat-pain-test/1", f"runs:/{rb.load_model(out).meta['mlflow_run']}/model"):
        with pytest.warns(SyntheticDataWarning):
            pd.testing.assert_frame_equal(a, rb.load_model(uri, runs_dir=runs).predict(manifest))
    assert a["pain"].tolist() == s["pain"].tolist()


def test_frozen_timm_model_carries_its_backbone_and_matches_in_process(env, tmp_path):
    root, data, runs = env
    overrides = {**TINY_DEEP, "finetune": "frozen"}
    model = rb.train("timm:resnet10t", str(data), out=tmp_path / "deep", set=overrides, runs_dir=runs, device="cpu")
    state = tmp_path / "deep" / "artifacts" / "ratspain" / "method"
    assert (state / "model.safetensors").is_file() and model.meta["preprocessing"]["view"].startswith("the centre 40 px crop")
    files = images_of(data / "images")
    got = model.predict([str(f) for f in files])
    ref = in_process("timm:resnet10t", data, overrides, files)
    assert got["pain"].tolist() == ref.labels.tolist()
    assert np.allclose(got["pain_probability"], ref.scores, atol=1e-4)
    card = (tmp_path / "deep" / "MODEL_CARD.md").read_text()
    assert "**None.**" in card and "LORO" in card  # no run of this config: said plainly


def test_painseeker_explains_each_image_and_lbp_refuses_to(env, lbp, tmp_path, capsys):
    root, data, runs = env
    overrides = {**TINY_DEEP, "finetune": "full", "epochs": 1, "k_high": 2}
    out = tmp_path / "ps"
    rb.train("painseeker:resnet10t", str(data), out=out, set=overrides, runs_dir=runs, device="cpu")
    files = images_of(data / "images")[:5]
    assert predict_cli(out, *files, out=tmp_path / "s.csv", extra=["--explain", str(tmp_path / "beta")]) == 0
    s = pd.read_csv(tmp_path / "s.csv")
    assert len(list((tmp_path / "beta").glob("*.png"))) == 5 and all(Path(p).is_file() for p in s["explain"])
    assert predict_cli(lbp[0], *files, extra=["--explain", str(tmp_path / "no")]) == 2
    assert "no attention maps to explain" in capsys.readouterr().err


def test_a_broken_outside_method_is_refused_with_the_reason(env, tmp_path, monkeypatch, capsys):
    """An outside method trains in its sandboxed worker (tests/test_model_sandboxed.py); one whose code does not load
    there is refused in one line, before anything is written."""
    root, data, runs = env
    sub = tmp_path / "subs" / "outside"
    sub.mkdir(parents=True)
    (sub / "submission.toml").write_text('name = "outside"\nentry_point = "method:M"\n')
    (sub / "method.py").write_text("")
    monkeypatch.setenv("RATSPAIN_SUBMISSIONS_DIR", str(tmp_path / "subs"))
    monkeypatch.setattr(reg, "_default", [])
    assert main(["train", "--method", "outside", "--data", str(data), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "outside: " in err and "cannot load the method in its sandbox" in err and not (tmp_path / "m").exists()


def test_batches_start_small_then_keep_every_image_in_order(tmp_path):
    """The first batch is an eighth of the others (scoring starts after a short decode); every image comes once,
    in order, with a bad file's error in its own row."""
    from ratspain_bench.model.inputs import Item
    from ratspain_bench.model.predict import decoded_batches

    good = tmp_path / "a.png"
    Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(good)
    items = [Item(str(i), good if i != 40 else tmp_path / "missing.png") for i in range(300)]
    batches = list(decoded_batches(items, 4, 128))
    assert [len(b) for b in batches] == [16, 128, 128, 28]
    flat = [pair for b in batches for pair in b]
    assert [it.image for it, _ in flat] == [str(i) for i in range(300)]
    assert isinstance(flat[40][1], str) and "missing.png" in flat[40][1]
    assert flat[0][1][1].shape == (4, 4, 3)
    assert list(decoded_batches([], 4, 128)) == []
