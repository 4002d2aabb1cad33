"""MLflow records of studies: a parent run per study, a child run per trial.

Experiment `ratspain-study/<dataset>` (the leaderboard reads `ratspain.role` = parent/fold only, and
studies never use those roles). Parent tags: `ratspain.role=study`, `ratspain.study_kind`
(sensitivity|tune), `ratspain.study` (the Optuna study name), `ratspain.study_id` (digest of storage
and study name), `ratspain.method`, `ratspain.dataset`, `ratspain.scored_on` (`test rats (analysis)`
for sensitivity, `nested LORO` for tune), `ratspain.status` (running|complete|incomplete).
Children: `ratspain.role=trial`, `ratspain.trial` (Optuna trial number), `mlflow.parentRunId`.

Several workers may log the same study at once: a run is created, then looked up again, and when
more than one exists for the same key every worker keeps the earliest and deletes its own, so each
study has one parent and each trial one child.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from .. import tracking

EXPERIMENT_PREFIX = "ratspain-study/"


def study_id(storage_url: str, study_name: str) -> str:
    return hashlib.sha1(f"{storage_url}|{study_name}".encode()).hexdigest()[:12]


def client(runs_dir, uri: str | None = None, attempts: int = 5):
    """An MLflow client whose store is ready. Workers starting together on a fresh local SQLite store
    would race to create its tables: the first use is serialised by a lock file and retried."""
    import time

    for name in ("alembic", "mlflow.store.db.utils", "mlflow.store.sql_alchemy", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for attempt in range(attempts - 1):
        try:
            return _ready_client(runs_dir, uri)
        except Exception:  # another worker is creating the store: wait and retry
            time.sleep(0.5 * (attempt + 1))
    return _ready_client(runs_dir, uri)


def _ready_client(runs_dir, uri):
    import fcntl

    resolved = tracking.tracking_uri(runs_dir, uri)
    if not resolved.startswith("sqlite:///"):
        c = tracking.client(runs_dir, uri)
        c.search_experiments(max_results=1)
        return c
    lock_path = Path(resolved[len("sqlite:///"):]).with_suffix(".init.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            c = tracking.client(runs_dir, uri)
            c.search_experiments(max_results=1)
            return c
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def experiment(c, dataset_name: str, runs_dir) -> str:
    name = f"{EXPERIMENT_PREFIX}{dataset_name}"
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    uri = c._tracking_client.tracking_uri if hasattr(c, "_tracking_client") else ""
    local = uri.startswith(("sqlite:", "file:")) or "://" not in uri
    try:
        return c.create_experiment(name, artifact_location=(Path(runs_dir).resolve() / "artifacts").as_uri() if local else None)
    except Exception:  # created meanwhile by another worker
        return c.get_experiment_by_name(name).experiment_id


def _query(tags: dict) -> str:
    return " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())


def _one(c, exp: str, key: dict, create) -> str:
    """The run with tags `key`, created by `create()` when missing; concurrent duplicates collapse to the earliest."""
    found = c.search_runs([exp], filter_string=_query(key), max_results=50)
    if found:
        return sorted(found, key=lambda r: (r.info.start_time, r.info.run_id))[0].info.run_id
    mine = create()
    found = c.search_runs([exp], filter_string=_query(key), max_results=50)
    first = sorted(found, key=lambda r: (r.info.start_time, r.info.run_id))[0].info.run_id if found else mine
    if first != mine:
        c.delete_run(mine)
    return first


def parent_run(c, exp: str, sid: str, name: str, tags: dict, params: dict) -> str:
    key = {"ratspain.role": "study", "ratspain.study_id": sid}

    def create():
        run = c.create_run(exp, run_name=name, tags={**key, **tags, "ratspain.status": "running"})
        tracking.log(c, run.info.run_id, params={**params, **tracking.versions(), "git_commit": tracking.git_commit()})
        return run.info.run_id

    return _one(c, exp, key, create)


def logged_trials(c, exp: str, parent_id: str) -> set[str]:
    runs = c.search_runs([exp], filter_string=_query({"ratspain.role": "trial", "ratspain.parent_study": parent_id}), max_results=5000)
    return {r.data.tags.get("ratspain.trial", "") for r in runs}


def trial_run(c, exp: str, parent_id: str, number: int, name: str, tags: dict, params: dict, metrics: dict) -> str:
    key = {"ratspain.role": "trial", "ratspain.parent_study": parent_id, "ratspain.trial": str(number)}

    def create():
        run = c.create_run(exp, run_name=name, tags={**key, "mlflow.parentRunId": parent_id, **tags})
        tracking.log(c, run.info.run_id, params=params, metrics=metrics)
        c.set_terminated(run.info.run_id, "FINISHED")
        return run.info.run_id

    return _one(c, exp, key, create)


def finish(c, parent_id: str, status: str, metrics: dict | None = None, artifacts=(), tags: dict | None = None) -> None:
    tracking.log(c, parent_id, metrics=metrics or {}, tags={"ratspain.status": status, **(tags or {})})
    for path in artifacts:
        if Path(path).is_file():
            c.log_artifact(parent_id, str(path))
    if status == "complete":
        c.set_terminated(parent_id, "FINISHED")
