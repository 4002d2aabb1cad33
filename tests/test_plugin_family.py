"""A new method family written in one file, installed as a plugin, runs under `run`, `study tune` and
`leaderboard` without any other file of the project being edited."""
import textwrap

import pytest
from tinydata import make_dataset

import ratspain_bench as rb
from ratspain_bench.cli import main
from ratspain_bench.evaluation import sandbox
from ratspain_bench.methods import registry as reg

FAMILY = '''
"""Mean brightness of the face against a threshold: everything about the method is declared here."""
from dataclasses import dataclass

import numpy as np

from ratspain_bench.methods import Method, Predictions


@dataclass(frozen=True)
class BrightnessConfig:
    threshold: float = 0.3
    image_size: int = 32
    PROFILES = {"quick": {"image_size": 24}}


class Brightness(Method):
    Config = BrightnessConfig
    family = "brightness"
    suites = ("brightness-suite",)
    SEARCH_SPACE = {"threshold": {"low": 0.1, "high": 0.6}}

    def fit(self, train):
        self.scale = float(np.asarray(train.images).mean()) / 255 or 1.0

    def predict(self, test):
        s = np.clip(np.asarray(test.images).mean(axis=(1, 2, 3)) / 255, 0, 1)
        return Predictions((s > self.config.threshold).astype(int), s)
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "brightness_family.py").write_text(textwrap.dedent(FAMILY))
    dist = site / "brightness_family-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brightness-family\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ratspain_bench.methods]\nbrightness = brightness_family:Brightness\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("RATSPAIN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(reg, "_default", [])
    return tmp_path, make_dataset(tmp_path / "data", subjects=("a", "b", "c", "d"), per_subject=6, size=32)


def test_one_file_family_runs_under_run_tune_and_leaderboard(plugin, monkeypatch, capsys):
    tmp, data = plugin
    monkeypatch.setenv("RATSPAIN_TRUST", "brightness-family")  # in this process: tuning stays fast
    runs = str(tmp / "runs")
    assert main(["run", "--data", str(data), "--suite", "brightness-suite", "--runs-dir", runs, "--quiet"]) == 0
    assert "brightness" in capsys.readouterr().out
    assert rb.get_method("brightness").config("quick").image_size == 24  # its own profile
    assert main(["study", "tune", "--data", str(data), "--method", "brightness", "--n-trials", "2", "--runs-dir", runs,
                 "--out", str(tmp / "tune"), "--quiet"]) == 0
    assert "threshold" in capsys.readouterr().out  # the search space it declares
    assert main(["leaderboard", "--runs-dir", runs, "--resamples", "50"]) == 0
    (board,) = rb.leaderboard(runs_dir=runs, resamples=50)
    rows = {r.label: r for r in board.ranked}  # the run, and the tune's nested-LORO result as its own row
    assert set(rows) == {"brightness", "brightness, tuned (nested LORO)"}
    row = rows["brightness"]
    assert row.method == "brightness" and row.source == "plugin (brightness-family)" and row.code_hash
    assert rows["brightness, tuned (nested LORO)"].source == "nested LORO"


@pytest.mark.skipif(sandbox.unavailable() is not None, reason=f"no sandbox here: {sandbox.unavailable()}")
def test_an_untrusted_plugin_runs_sandboxed(plugin):
    tmp, data = plugin
    spec = rb.get_method("brightness")
    assert not spec.trusted
    r = rb.run(["brightness"], str(data), runs_dir=tmp / "runs")
    assert r.table.loc[0, "status"] == "complete"
    from ratspain_bench.evaluation.record import Store, Tag

    parent = Store(tmp / "runs").client.get_run(r.results[0].run_id)
    assert parent.data.tags[Tag.SANDBOX] == sandbox.SandboxSettings().resolved("cpu") and parent.data.params["cfg.image_size"] == "24"
