"""Read the MLflow store (the one source of truth) into plain records; everything after is pure.

`fetch_runs(uri)` returns one `RunRecord` per parent run (tag `ratspain.role=parent`) with its fold
children and, for runs marked complete, the `predictions.csv` artifact as a DataFrame.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd

from ..errors import InputError

PREDICTION_COLUMNS = ("image", "subject", "y_true", "y_pred")


@dataclass(frozen=True)
class FoldRecord:
    run_id: str
    subject: str
    status: str
    metrics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RunRecord:
    """A parent run: one (method, dataset, seed) as logged by `ratspain-bench run`."""

    run_id: str
    experiment_id: str
    dataset: str
    fingerprint: str
    method: str
    family: str
    seed: str
    profile: str
    config_hash: str
    source: str
    status: str
    folds_expected: int | None
    hardware: str
    start_time: int
    metrics: dict = field(default_factory=dict)
    folds: tuple[FoldRecord, ...] = ()
    predictions: pd.DataFrame | None = None
    error: str = ""
    predictions_problem: str = ""

    @property
    def complete_subjects(self) -> set[str]:
        return {f.subject for f in self.folds if f.status == "complete"}


# ---------------------------------------------------------------- tracking URI


def resolve_tracking_uri(runs_dir="ratspain-runs", uri: str | None = None) -> str:
    """`uri`, else $MLFLOW_TRACKING_URI, else `sqlite:///RUNS_DIR/mlflow.db` (the `run` command's default)."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(Path(runs_dir).resolve() / 'mlflow.db')}"


def local_store_path(uri: str) -> Path | None:
    """The file or folder behind a local store URI (sqlite or file), None for a server."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):].split("?")[0])  # sqlite:////abs/x.db -> /abs/x.db
    if uri.startswith("file:"):
        return Path(urlparse(uri).path)
    if "://" not in uri:
        return Path(uri)
    return None


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def run_url(uri: str, experiment_id: str, run_id: str) -> str:
    """Where the MLflow UI shows a run: the tracking server itself, or `mlflow ui`'s default address."""
    base = uri.rstrip("/") if is_server(uri) else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def ui_command(uri: str) -> str | None:
    """The command that serves a local store at http://127.0.0.1:5000 (None for a tracking server)."""
    if is_server(uri):
        return None
    return f"mlflow ui --backend-store-uri {uri}"


# ---------------------------------------------------------------- reading


def _quiet_mlflow_logs() -> None:
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.store.sql_alchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _search_all(client, experiment_ids, filter_string) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _experiments(client) -> list:
    out, token = [], None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out


def read_predictions(path) -> pd.DataFrame:
    """A predictions CSV with the contract's columns; raises ValueError naming what is wrong."""
    frame = pd.read_csv(path, dtype={"image": str, "subject": str, "fold": str, "method": str, "seed": str})
    missing = [c for c in PREDICTION_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"missing column(s) {', '.join(missing)}")
    for col in ("y_true", "y_pred"):
        values = pd.to_numeric(frame[col], errors="coerce")
        if values.isna().any() or not values.isin([0, 1]).all():
            raise ValueError(f"column {col} must hold 0 or 1")
        frame[col] = values.astype(int)
    if frame["image"].duplicated().any():
        raise ValueError(f"image {frame.loc[frame['image'].duplicated(), 'image'].iloc[0]!r} appears twice")
    return frame


def _load_predictions(client, run, tmp: Path) -> tuple[pd.DataFrame | None, str]:
    """The run's `predictions.csv` artifact: read in place from a local artifact store, else downloaded."""
    root = run.info.artifact_uri or ""
    local = None
    if root.startswith("file:") or (root and "://" not in root):
        candidate = Path(urlparse(root).path if root.startswith("file:") else root) / "predictions.csv"
        local = candidate if candidate.is_file() else None
    if local is None:
        from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR

        previous = os.environ.get(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name)
        os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = "false"
        try:
            local = client.download_artifacts(run.info.run_id, "predictions.csv", str(tmp / run.info.run_id))
        except Exception as e:  # missing artifact or unreachable artifact store: the run cannot be scored
            return None, f"predictions.csv artifact not readable ({type(e).__name__})"
        finally:
            if previous is None:
                os.environ.pop(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name, None)
            else:
                os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = previous
    try:
        return read_predictions(local), ""
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        return None, f"predictions.csv: {e}"


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _record(run, exp_name: str, folds: list, predictions, problem: str) -> RunRecord:
    tags, params = run.data.tags, run.data.params
    dataset = tags.get("ratspain.dataset") or params.get("dataset") or exp_name.removeprefix("ratspain/")
    config_hash = tags.get("ratspain.config_hash") or "|".join(f"{k}={v}" for k, v in sorted(params.items()) if k.startswith("cfg."))
    return RunRecord(
        run_id=run.info.run_id, experiment_id=run.info.experiment_id, dataset=dataset,
        fingerprint=tags.get("ratspain.dataset_fingerprint") or params.get("dataset_fingerprint", ""),
        method=tags.get("ratspain.method") or params.get("method", "?"), family=params.get("family", ""),
        seed=tags.get("ratspain.seed") or params.get("seed", ""), profile=tags.get("ratspain.profile") or params.get("profile", ""),
        config_hash=config_hash, source=tags.get("ratspain.source", ""), status=tags.get("ratspain.status", "unknown"),
        folds_expected=_int_or_none(tags.get("ratspain.folds_expected")), hardware=tags.get("ratspain.hardware", ""),
        start_time=int(run.info.start_time or 0), metrics=dict(run.data.metrics),
        folds=tuple(FoldRecord(f.info.run_id, f.data.tags.get("ratspain.subject", ""), f.data.tags.get("ratspain.status", "unknown"),
                               dict(f.data.metrics)) for f in folds),
        predictions=predictions, error=tags.get("ratspain.error", ""), predictions_problem=problem)


def fetch_runs(uri: str) -> list[RunRecord]:
    """Every parent run in the store, with fold children and (for complete runs) predictions."""
    path = local_store_path(uri)
    if path is not None and not path.exists():
        raise InputError(f"{path}: no MLflow store here (run `ratspain-bench run` first, or pass --runs-dir/--tracking-uri)")
    _quiet_mlflow_logs()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    try:
        experiments = _experiments(client)
    except Exception as e:
        raise InputError(f"{uri}: cannot read the MLflow store ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    records = []
    with tempfile.TemporaryDirectory(prefix="ratspain-leaderboard-") as tmp:
        for exp in experiments:
            parents = _search_all(client, [exp.experiment_id], "tags.`ratspain.role` = 'parent'")
            if not parents:
                continue
            children: dict[str, list] = {}
            for f in _search_all(client, [exp.experiment_id], "tags.`ratspain.role` = 'fold'"):
                children.setdefault(f.data.tags.get("mlflow.parentRunId", ""), []).append(f)
            for p in parents:
                preds, problem = (None, "")
                if p.data.tags.get("ratspain.status") == "complete":
                    preds, problem = _load_predictions(client, p, Path(tmp))
                records.append(_record(p, exp.name, children.get(p.info.run_id, []), preds, problem))
    return records
