"""`train` and `predict` of an untrusted submission: fitted, saved, loaded and scored only in sandboxed workers.

The harness never imports the submission; its saved state crosses back only as plain files and folders
within a size limit; a saved model's `load` sees its own state (read-only) and nothing of the dataset."""
import shutil
import sys
import textwrap

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from tinydata import make_dataset

import ratspain_bench as rb
from ratspain_bench.cli import main
from ratspain_bench.errors import InputError
from ratspain_bench.evaluation import sandbox
from ratspain_bench.methods import registry as reg

pytestmark = [pytest.mark.skipif(sandbox.unavailable() is not None, reason=f"no sandbox here: {sandbox.unavailable()}"),
              pytest.mark.usefixtures("one_thread")]

METHOD = '''
import json, os
from dataclasses import dataclass
from pathlib import Path
import numpy as np
from ratspain_bench.methods import Method, Predictions


@dataclass(frozen=True)
class Config:
    image_size: int = 32


class Bright(Method):
    """Pain when the face is brighter than the midpoint of the two classes' mean brightness."""
    Config = Config
    family = "bright"

    def fit(self, train):
        m = train.images.reshape(len(train.images), -1).mean(1)
        y = np.asarray(train.labels)
        self.t = float((m[y == 1].mean() + m[y == 0].mean()) / 2)

    def predict(self, test):
        m = test.images.reshape(len(test.images), -1).mean(1)
        s = 1 / (1 + np.exp(-(m - self.t)))
        return Predictions((s > 0.5).astype(int), s)

    def save(self, folder):
{SAVE}

    @classmethod
    def load(cls, config, folder, context=None):
{LOAD}
'''
SAVE = '(Path(folder) / "t.json").write_text(json.dumps({"t": self.t}))'
LOAD = 'm = cls(config, context)\nm.t = json.loads((Path(folder) / "t.json").read_text())["t"]\nreturn m'


def _body(code: str) -> str:
    return textwrap.indent(textwrap.dedent(code).strip("\n"), " " * 8)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A dataset, a submissions folder, isolated caches and runs; `submission(name, save, load)` writes one."""
    root = tmp_path_factory.mktemp("sandboxed-model")
    subs = root / "submissions"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RATSPAIN_CACHE_DIR", str(root / "cache"))
        mp.setenv("RATSPAIN_SUBMISSIONS_DIR", str(subs))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("RATSPAIN_TRUST", raising=False)
        mp.setattr(reg, "_default", [])

        def submission(name, save=SAVE, load=LOAD):
            folder = subs / name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "submission.toml").write_text(f'name = "{name}"\nentry_point = "method:Bright"\nauthors = ["M. Allory"]\n'
                                                    'contact = "m@lab.org"\npaper = "unpublished"\nlicence = "MIT"\n')
            (folder / "method.py").write_text(METHOD.format(SAVE=_body(save), LOAD=_body(load)))
            reg._default.clear()
            return folder

        yield root, make_dataset(root / "data"), submission


def imported(name: str) -> list[str]:
    """Modules of this process that come from the submission `name` (folder or model code copy)."""
    return [m for m, mod in list(sys.modules.items()) if m.startswith("ratspain_submission_code_")  # a model's code copy
            or name in m or name in str(getattr(mod, "__file__", "") or "")]


def train_cli(lab, name, out, *extra):
    root, data, _ = lab
    return main(["train", "--method", name, "--data", str(data), "--out", str(out), "--runs-dir", str(root / "runs"),
                 "--quiet", "--device", "cpu", *extra])


def test_train_and_predict_sandboxed_equal_the_in_process_method(lab, tmp_path, monkeypatch):
    root, data, submission = lab
    submission("brightsub")
    out = tmp_path / "m"
    assert train_cli(lab, "brightsub", out) == 0
    state = out / "artifacts" / "ratspain"
    assert (state / "method" / "t.json").is_file() and (state / "code" / "method.py").is_file()
    model = rb.load_model(out, device="cpu")
    assert model.meta["sandboxed"] and model.meta["sandbox"] == sandbox.SandboxSettings().resolved("cpu") and model.meta["class"] == "method:Bright"
    paths = [str(p) for p in sorted((data / "images").glob("*.png"))]
    got = model.predict(paths)
    assert main(["predict", str(out), str(data / "images"), "--out", str(tmp_path / "s.csv"), "--quiet", "--device", "cpu"]) == 0
    pyf = mlflow.pyfunc.load_model(str(out)).predict(pd.DataFrame({"path": paths}))
    assert imported("brightsub") == []  # neither train nor predict imported it here
    csv = pd.read_csv(tmp_path / "s.csv")
    assert csv["pain"].tolist() == got["pain"].tolist() and np.allclose(csv["pain_probability"], got["pain_probability"])
    pd.testing.assert_frame_equal(got, pyf, check_dtype=False)
    # the model loads without the submission folder
    shutil.rmtree(root / "submissions" / "brightsub")
    reg._default.clear()
    again = rb.load_model(out, device="cpu").predict(paths[:3])
    pd.testing.assert_frame_equal(again, got.iloc[:3], check_dtype=False)
    # the same method trusted: fitted and predicted in this process
    submission("brightsub")
    monkeypatch.setenv("RATSPAIN_TRUST", "brightsub")
    ref = rb.train("brightsub", str(data), out=tmp_path / "trusted", runs_dir=root / "runs", device="cpu").predict(paths)
    assert got["pain"].tolist() == ref["pain"].tolist()
    assert np.allclose(got["pain_probability"], ref["pain_probability"], atol=1e-6) and got["pain"].nunique() == 2
    with pytest.raises(InputError, match="not supported for a sandboxed"):
        model.predict(paths[:1], explain=tmp_path / "beta")


def test_a_saved_symlink_or_an_oversized_state_is_refused(lab, tmp_path, capsys):
    submission = lab[2]
    submission("linker", save='os.symlink("/etc/passwd", Path(folder) / "t.json")')
    assert train_cli(lab, "linker", tmp_path / "a") == 2
    err = capsys.readouterr().err
    assert "linker" in err and "'t.json', a symlink" in err and "plain files and folders" in err
    assert not (tmp_path / "a").exists()
    submission("hoarder", save='(Path(folder) / "sub").mkdir()\n(Path(folder) / "sub" / "big.bin").write_bytes(b"x" * (3 << 20))')
    assert train_cli(lab, "hoarder", tmp_path / "b", "--state-limit", "2") == 2
    err = capsys.readouterr().err
    assert "hoarder" in err and "exceeds the limit of 2 MiB" in err and not (tmp_path / "b").exists()
    assert imported("linker") == [] and imported("hoarder") == []


def test_load_sees_its_state_and_nothing_of_the_dataset(lab, tmp_path, capsys):
    _, data, submission = lab
    manifest = data / "manifest.csv"
    load = textwrap.dedent(f'''
        if os.listdir(folder) != ["t.json"]:
            raise RuntimeError(f"not its own state: {{os.listdir(folder)}}")
        try:
            open(Path(folder) / "note", "w")
        except OSError:
            pass
        else:
            raise RuntimeError("its state is writable")
        open({str(manifest)!r}).read()
        ''') + LOAD
    submission("peeker", load=load)
    assert train_cli(lab, "peeker", tmp_path / "m") == 0
    assert main(["predict", str(tmp_path / "m"), str(data / "images"), "--quiet", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "peeker" in err and "scoring in its sandbox failed" in err and "FileNotFoundError" in err and "manifest.csv" in err
    assert imported("peeker") == []
