"""Options shared by several commands."""
from __future__ import annotations

import json
import sys


def add_data_option(p) -> None:
    p.add_argument("--data", default=None, help="folder with manifest.csv, a manifest CSV, an annotation JSON, or a SUBJECT/LEVEL tree (default: the synthetic replica)")
    p.add_argument("--include-low-confidence", action="store_true", help="keep rows with confidence=low (excluded by default, as in the paper)")


def add_runs_dir_option(p) -> None:
    p.add_argument("--runs-dir", default="ratspain-runs", help="local MLflow store and predictions (default ./ratspain-runs)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else RUNS_DIR/mlflow.db)")


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")
