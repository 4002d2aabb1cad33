"""Where the leaderboard's rows come from (the run record's reader) and where its links go (the MLflow UI)."""
from __future__ import annotations

from ..evaluation.record import FoldRecord, RunRecord, fetch_runs, tracking_uri

__all__ = ["FoldRecord", "RunRecord", "fetch_runs", "is_server", "resolve_tracking_uri", "run_url", "shown_uri", "ui_base", "ui_command"]

DEFAULT_UI = "http://127.0.0.1:5000"


def resolve_tracking_uri(runs_dir="ratspain-runs", uri: str | None = None) -> str:
    return tracking_uri(runs_dir, uri)


def shown_uri(uri: str, given=None, base=None) -> str:
    """The store as a board names it. The SQLite file of a runs folder given (`given`) as a relative path, under
    `base` (default the working folder): relative to it (`sqlite:///ratspain-runs/mlflow.db`, so a committed board
    holds no machine's absolute path, and the command works from where it was run); a store given as an absolute
    path or a tracking URI: as it was given."""
    import os

    if not uri.startswith("sqlite:////") or (given is not None and ("://" in str(given) or os.path.isabs(str(given)))):
        return uri
    path, base = uri[len("sqlite:///"):], os.path.abspath(base or os.getcwd())
    inside = os.path.commonpath([path, base]) == base
    return f"sqlite:///{os.path.relpath(path, base)}" if inside else uri


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def ui_base(uri: str, mlflow_ui: str | None = None) -> str:
    """The MLflow UI the page links to: `--mlflow-ui`, else the tracking server itself, else `mlflow ui`'s default."""
    return (mlflow_ui or (uri if is_server(uri) else DEFAULT_UI)).rstrip("/")


def run_url(ui: str, experiment_id: str, run_id: str) -> str:
    return f"{ui}/#/experiments/{experiment_id}/runs/{run_id}"


def ui_command(uri: str) -> str | None:
    """The command that serves a local store (None for a tracking server)."""
    return None if is_server(uri) else f"mlflow ui --backend-store-uri {uri}"
