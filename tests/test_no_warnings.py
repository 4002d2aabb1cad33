"""The command line's main paths print no library warning: each runs with Python's warnings turned into errors, but for
three filters, each of a library's own import or internals (nothing of ours calls what they warn about):

- `ignore::UserWarning:mlflow.types.type_hints`: MLflow, while importing `mlflow.pyfunc`, infers schemas of its own
  agent types and warns that one of its type hints is `Any`;
- `ignore::DeprecationWarning:rdflib.plugins.parsers.jsonld`: rdflib, which mlcroissant uses to read a dataset card,
  calls its own deprecated `ConjunctiveGraph`;
- `ignore:The ``noload`` loader strategy is deprecated`: SQLAlchemy, on MLflow's SQLite store, about a loader option
  MLflow's models use.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

FILTERS = ["error", "ignore::UserWarning:mlflow.types.type_hints", "ignore::DeprecationWarning:rdflib.plugins.parsers.jsonld",
           "ignore:The ``noload`` loader strategy is deprecated"]
TEMPLATE = Path(__file__).resolve().parents[1] / "submissions" / "_template"
COUNTS = '{"1": {"no_pain": 6, "moderate": 6}, "2": {"no_pain": 6, "moderate": 6}, "3": {"no_pain": 6, "moderate": 6}}'


def test_the_main_commands_print_no_library_warning(tmp_path):
    env = {**os.environ, "RATSPAIN_CACHE_DIR": str(tmp_path / "cache"), "PYTHONWARNINGS": ",".join(FILTERS)}
    env.pop("MLFLOW_TRACKING_URI", None)
    commands = [["synth", "data", "--size", "64", "--per-subject-counts", COUNTS], ["data", "check", "--data", "data"],
                ["run", "--methods", "lbp-r1p8-8x8", "--data", "data", "--quiet"], ["leaderboard"],
                ["score", "--latest", "lbp-r1p8-8x8", "--format", "md"], ["train", "--method", "lbp-r1p8-8x8", "--data", "data", "--out", "m"],
                ["predict", "m", "data/images/1", "--out", "s.csv", "--quiet"], ["submit", "validate", str(TEMPLATE)]]
    for cmd in commands:
        r = subprocess.run([sys.executable, "-m", "ratspain_bench", *cmd], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, (cmd, r.stdout[-2000:], r.stderr[-3000:])
        assert "Warning" not in r.stderr, (cmd, r.stderr[-3000:])
    assert not list((tmp_path / "m").rglob("*.pkl"))  # models-from-code: no pickle of the project's code in the model


def test_a_read_only_image_array_becomes_a_tensor_without_a_warning():
    """`make demo` printed PyTorch's "The given NumPy array is not writable" for the cached (read-only) images."""
    import warnings

    from ratspain_bench.engine.augment import to_uint8_tensor

    images = np.zeros((2, 8, 8, 3), np.uint8)
    images.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = to_uint8_tensor(images)
    assert t.shape == (2, 8, 8, 3) and not np.shares_memory(t.numpy(), images)


def test_statsmodels_boundary_warning_is_explained():
    """`groups` printed "The MLE may be on the boundary" with no explanation. Animals with no effect of their own (rows
    independent of the animal): the random-intercept variance is estimated at zero, and the text says what that means."""
    import pandas as pd

    from ratspain_bench.video.groups import compare

    rng = np.random.default_rng(0)
    rows = [{"subject": f"r{i}", "session": s, "group": "treated" if i < 4 else "control",
             "mean_pain_prob": 0.3 + (0.2 if i < 4 and s == "post" else 0) + rng.normal(0, 0.05)}
            for i in range(8) for s in ("pre", "post")]
    (line,) = [x for x in compare(pd.DataFrame(rows)).text().splitlines() if "statsmodels:" in x]
    assert "on the boundary" in line and "the variance between animals is estimated at or near zero" in line
