"""MLflow tracking: one experiment per dataset, a parent run per (method, dataset, seed), a child per fold.

Conventions (read back by the leaderboard):
- experiment `ratspain/<dataset>`; parent tags `ratspain.role=parent`, `ratspain.method`, `ratspain.dataset`,
  `ratspain.dataset_fingerprint`, `ratspain.seed`, `ratspain.profile`, `ratspain.config_hash`,
  `ratspain.source`, `ratspain.status` (running|complete|failed), `ratspain.folds_expected`,
  `ratspain.hardware`; metrics `pooled_f1`, `pooled_accuracy`, `pooled_balanced_accuracy`, `pooled_mcc`,
  `mean_f1`, `mean_accuracy`, `train_seconds`, `folds_complete`;
- child tags `ratspain.role=fold`, `ratspain.subject`, `ratspain.status`; metrics per fold.
"""
from __future__ import annotations

import os
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("ratspain_bench", "torch", "timm", "scikit-learn", "scikit-image", "numpy", "mlflow", "optuna")


def tracking_uri(runs_dir, uri: str | None = None) -> str:
    """`uri`, else $MLFLOW_TRACKING_URI, else a SQLite store `RUNS_DIR/mlflow.db`."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    runs = Path(runs_dir).resolve()
    runs.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{runs / 'mlflow.db'}"


def client(runs_dir, uri: str | None = None):
    import logging

    for name in ("alembic", "mlflow.store.db.utils", "mlflow.store.sql_alchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri(runs_dir, uri))


def experiment_id(c, dataset_name: str, runs_dir) -> str:
    name = f"ratspain/{dataset_name}"
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    artifacts = (Path(runs_dir).resolve() / "artifacts").as_uri()
    uri = c._tracking_client.tracking_uri if hasattr(c, "_tracking_client") else ""
    try:
        local = uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri
        return c.create_experiment(name, artifact_location=artifacts if local else None)
    except Exception:  # created meanwhile by another process
        return c.get_experiment_by_name(name).experiment_id


def find_runs(c, exp_id: str, **tags) -> list:
    """Runs of an experiment whose tags equal `tags` (keys given without the `ratspain.` prefix)."""
    query = " and ".join(f"tags.`ratspain.{k}` = '{v}'" for k, v in tags.items())
    return c.search_runs([exp_id], filter_string=query, max_results=1000)


def log(c, run_id: str, metrics: dict | None = None, params: dict | None = None, tags: dict | None = None) -> None:
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    c.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
        params=[Param(k, str(v)[:6000]) for k, v in (params or {}).items()],
        tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
    )


def versions() -> dict[str, str]:
    out = {}
    for p in PACKAGES:
        try:
            out[f"version.{p}"] = version(p)
        except PackageNotFoundError:
            pass
    return out


def git_commit() -> str:
    try:
        root = Path(__file__).resolve().parents[1]
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def hardware(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(0)
    return f"{device} x{os.cpu_count()}"
