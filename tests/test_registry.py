import sys
import textwrap

import pytest

from ratspain_bench.errors import InputError
from ratspain_bench.methods import registry as reg
from ratspain_bench.methods.base import config_params
from ratspain_bench.methods.registry import DuplicateMethodError, MethodSpec, Registry, UnknownMethodError


def test_paper_suite_is_registered_with_paper_settings():
    r = reg.default_registry()
    for name in ("lbp-r1p8-4x4", "lbp-r1p8-8x8", "lbp-r1p8-16x16", "lbp-r3p8-4x4", "lbp-r3p8-8x8", "lbp-r3p8-16x16",
                 "resnet18", "painseeker-noprsc", "painseeker"):
        assert name in r.names()
    cfg = config_params(r.get("lbp-r3p8-16x16").config())
    assert (cfg["radius"], cfg["points"], cfg["grid"], cfg["C"]) == (3, 8, 16, 1.0)
    assert "Table 3" in r.get("lbp-r1p8-4x4").cite


def test_duplicate_names_raise():
    r = Registry()
    r.add(MethodSpec("x", "lbp", "ratspain_bench.methods.lbp_svm:LbpSvm"))
    with pytest.raises(DuplicateMethodError, match="registered twice"):
        r.add(MethodSpec("x", "lbp", "ratspain_bench.methods.lbp_svm:LbpSvm", source="elsewhere"))


def test_unknown_name_suggests_closest():
    with pytest.raises(UnknownMethodError, match="did you mean lbp-r3p8-4x4"):
        reg.get_method("lbp-r3p8-4x5")
    assert isinstance(UnknownMethodError("x"), InputError)  # the CLI turns it into exit code 2


def test_parametric_family_resolves_by_name():
    spec = reg.get_method("timm:efficientnet_b0")
    assert spec.family == "timm" and dict(spec.params) == {"model": "efficientnet_b0"}


def test_unknown_parameter_is_named():
    with pytest.raises(KeyError, match="did you mean radius"):
        reg.get_method("lbp-r1p8-4x4").config(radiuss=2)


def test_submission_folder_is_discovered(tmp_path, monkeypatch):
    sub = tmp_path / "submissions" / "mean-brightness"
    sub.mkdir(parents=True)
    (sub / "submission.toml").write_text(textwrap.dedent('''
        name = "mean-brightness"
        entry_point = "method:MeanBrightness"
        [config]
        threshold = 0.3
    '''))
    (sub / "method.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass
        import numpy as np
        from ratspain_bench.methods import Method, Predictions

        @dataclass(frozen=True)
        class Config:
            threshold: float = 0.5
            image_size: int = 32

        class MeanBrightness(Method):
            Config = Config
            family = "mean-brightness"
            def fit(self, train):
                pass
            def predict(self, test):
                s = test.images.mean(axis=(1, 2, 3)) / 255
                return Predictions((s > self.config.threshold).astype(int), s)
    '''))
    monkeypatch.setenv("RATSPAIN_SUBMISSIONS_DIR", str(tmp_path / "submissions"))
    monkeypatch.setattr(reg, "_default", [])
    spec = reg.get_method("mean-brightness")
    assert spec.source == "submission (mean-brightness)" and spec.kind == "submission" and not spec.trusted
    assert dict(spec.params) == {"threshold": 0.3}
    with pytest.raises(InputError, match="only in its sandboxed worker"):  # discovery never imports outside code
        spec.load()
    monkeypatch.setenv("RATSPAIN_TRUST", "mean-brightness")
    assert spec.trusted and spec.config().threshold == 0.3 and spec.load().__name__ == "MeanBrightness"


def test_entry_point_plugin_is_registered(tmp_path, monkeypatch):
    pkg = tmp_path / "site"
    (pkg / "demo_plugin").mkdir(parents=True)
    (pkg / "demo_plugin" / "__init__.py").write_text("from ratspain_bench.methods.lbp_svm import LbpSvm as Plugged\n")
    dist = pkg / "demo_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ratspain_bench.methods]\nplugged-lbp = demo_plugin:Plugged\n")
    monkeypatch.syspath_prepend(str(pkg))
    monkeypatch.setattr(reg, "_default", [])
    spec = reg.get_method("plugged-lbp")
    assert spec.source == "plugin (demo-plugin)" and spec.kind == "plugin" and not spec.trusted
    monkeypatch.setenv("RATSPAIN_TRUST", "demo-plugin")  # a distribution can be trusted by name
    assert spec.load().family == "lbp"
    sys.modules.pop("demo_plugin", None)


def test_built_in_families_register_as_entry_points_like_plugins():
    r = reg.default_registry()
    fams = {f.family: f for f in r.families()}
    assert {"lbp", "timm", "painseeker"} <= set(fams) and all(not fams[f].outside for f in ("lbp", "timm", "painseeker"))
    assert r.get("lbp").config().grid == 4  # a family's own name runs its defaults
    assert r.suite("paper") == ["lbp-r1p8-4x4", "lbp-r1p8-8x8", "lbp-r1p8-16x16", "lbp-r3p8-4x4", "lbp-r3p8-8x8", "lbp-r3p8-16x16",
                                "resnet18", "painseeker-noprsc", "painseeker"]
    assert r.suite("quick")[-2:] == ["lite0-linear", "painseeker-lite0"]
    with pytest.raises(InputError, match="did you mean paper"):
        r.suite("papr")


BROKEN = {
    "toml-syntax": 'name = "x\n',
    "no-entry-point": 'name = "no-entry-point"\n',
    "predictions-only": 'kind = "predictions"\nname = "po"\n',
    "takes-a-built-in-name": 'name = "painseeker"\nentry_point = "method:M"\n',
}


def test_broken_submission_folders_never_stop_the_others(tmp_path, monkeypatch, capsys):
    """Each broken folder is listed with its reason; `methods` and built-in runs still work."""
    from tinydata import make_dataset

    from ratspain_bench.cli import main

    root = tmp_path / "submissions"
    for name, toml in BROKEN.items():
        (root / name).mkdir(parents=True)
        (root / name / "submission.toml").write_text(toml)
    (root / "syntax").mkdir()
    (root / "syntax" / "submission.toml").write_text('name = "syntax"\nentry_point = "method:M"\n')
    (root / "syntax" / "method.py").write_text("def broken(:\n")
    monkeypatch.setenv("RATSPAIN_SUBMISSIONS_DIR", str(root))
    monkeypatch.setenv("RATSPAIN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(reg, "_default", [])
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "BROKEN toml-syntax" in out and "invalid TOML" in out and "BROKEN no-entry-point" in out and "entry_point" in out
    assert "BROKEN painseeker" in out and "registered twice" in out
    assert not any(line.startswith("BROKEN po ") for line in out.splitlines())  # a predictions-only entry is not broken
    assert "syntax" in out  # discovery reads submission.toml only: the syntax error shows when it runs
    data = make_dataset(tmp_path / "d")
    assert main(["run", "--data", str(data), "--methods", "lbp-r1p8-4x4", "--runs-dir", str(tmp_path / "runs"), "--quiet"]) == 0
