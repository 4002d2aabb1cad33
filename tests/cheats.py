"""Adversarial submissions, shared by the sandbox tests: a cheat is a submission folder written from a template
(`lab(...).cheat(fit=..., predict=..., imports=..., module=...)`); a cheat that finds no labels falls back to
predicting "no pain" everywhere (pooled F1 0). Images are matched by the digest of their pixels (`pixels`),
which a method can always compute, whatever keys the harness hands it."""
import textwrap

import pytest
from tinydata import make_dataset

import ratspain_bench as rb
from ratspain_bench.methods import registry as reg

CHEAT = '''
import gc, glob, hashlib, json, mmap, os, socket, subprocess, sys, time
from dataclasses import dataclass
import numpy as np
from ratspain_bench.methods import Method, Predictions
{IMPORT}

@dataclass(frozen=True)
class Config:
    image_size: int = 32


def pixels(image):
    """An image's own digest: what a method can compute whatever keys the harness hands it."""
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def labels_from_disk(manifest, size=32):
    """The labels of every image, keyed by the digest of its pixels as the harness decodes them."""
    import csv
    from ratspain_bench.data.cache import decode
    root = os.path.dirname(manifest)
    out = {{}}
    for row in csv.DictReader(open(manifest)):
        out[pixels(decode(os.path.join(root, row["path"]), size))] = int(int(row["level"]) >= 1)
    return out


class Cheat(Method):
    Config = Config
    family = "cheat"

    def fit(self, train):
        self.train = train
{FIT}

    def predict(self, test):
        known = {{}}
{PREDICT}
        labels = np.array([known.get(k, known.get(pixels(im), 0)) for k, im in zip(test.keys, test.images)], dtype=int)
        return Predictions(labels, labels.astype(float))

{MODULE}
'''


def _indent(code: str) -> str:
    return textwrap.indent(textwrap.dedent(code).strip("\n"), " " * 8) if code.strip() else "        pass"


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """A dataset, an empty submissions folder, isolated caches and runs; `cheat(code)` writes a submission."""
    monkeypatch.setenv("RATSPAIN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RATSPAIN_SUBMISSIONS_DIR", str(tmp_path / "submissions"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RATSPAIN_TRUST", raising=False)
    monkeypatch.setattr(reg, "_default", [])
    data = make_dataset(tmp_path / "data", per_subject=12)

    def cheat(fit="", predict="", imports="", name="cheat", module=""):
        folder = tmp_path / "submissions" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "submission.toml").write_text(f'name = "{name}"\nentry_point = "method:Cheat"\nauthors = ["M. Allory"]\n'
                                                'contact = "m@lab.org"\npaper = "unpublished"\nlicence = "MIT"\n')
        (folder / "method.py").write_text(CHEAT.format(IMPORT=imports, FIT=_indent(fit), PREDICT=_indent(predict),
                                                        MODULE=textwrap.dedent(module)))
        reg._default.clear()
        return name

    def run(names, mode="sandbox", runs="runs", on=None, **kw):
        """`rb.run` of `names` on the lab's dataset (or `on`): sandboxed (the default kind, or `runsc`, `bwrap`),
        `no-sandbox`, or `trusted` (in-process)."""
        if mode == "trusted":
            monkeypatch.setenv("RATSPAIN_TRUST", ",".join(names))
        kind = {"sandbox": True, "no-sandbox": False, "trusted": True}.get(mode, mode)
        try:
            return rb.run(names, str(on or data), runs_dir=tmp_path / f"{runs}-{mode}", sandbox=kind, **kw)
        finally:
            monkeypatch.delenv("RATSPAIN_TRUST", raising=False)

    return tmp_path, data, cheat, run


def f1(result, method="cheat") -> float:
    row = result.table.set_index("method").loc[method]
    return row["pooled_f1"] if row["status"] == "complete" else None


def blocked(result, reason: str = "", method: str = "cheat") -> bool:
    """The cheat scored at chance (F1 0: it found no label) or its fold failed with a named reason."""
    (r,) = [x for x in result.results if x.method == method]
    return f1(result, method) == 0.0 if r.status == "complete" else reason in r.error and "fold" in r.error
