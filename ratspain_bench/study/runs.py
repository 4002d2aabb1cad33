"""MLflow records of studies: a parent run per study, a child run per trial (schema in `evaluation.record`).

Experiment `ratspain-study/<dataset>` (the leaderboard reads roles parent/fold only; studies never use
them). Parent tags: role `study`, `study_kind` (sensitivity|tune), `study` (the Optuna study name),
`study_id` (digest of storage and study name), `method`, `dataset`, `scored_on` (`test rats
(analysis)` for sensitivity, `nested LORO` for tune), `status` (running|complete|incomplete).
Children: role `trial`, `trial` (Optuna trial number), `parent_study`, `mlflow.parentRunId`.

Several workers may log the same study at once: a run is created, then looked up again, and when
more than one exists for the same key every worker keeps the earliest and deletes its own, so each
study has one parent and each trial one child.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from ..evaluation.record import STUDY, STUDY_EXPERIMENT_PREFIX, TRIAL, Store, Tag, git_commit, versions


def study_id(storage_url: str, study_name: str) -> str:
    return hashlib.sha1(f"{storage_url}|{study_name}".encode()).hexdigest()[:12]


def experiment(store: Store, dataset_name: str) -> str:
    return store.experiment(STUDY_EXPERIMENT_PREFIX + dataset_name)


def _one(store: Store, exp: str, key: dict, create) -> str:
    """The run with tags `key`, created by `create()` when missing; concurrent duplicates collapse to the earliest."""
    earliest = lambda runs: sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))[0].info.run_id  # noqa: E731
    found = store.find(exp, **key)
    if found:
        return earliest(found)
    mine = create()
    found = store.find(exp, **key)
    first = earliest(found) if found else mine
    if first != mine:
        store.client.delete_run(mine)
    return first


def parent_run(store: Store, exp: str, sid: str, name: str, tags: dict, params: dict) -> str:
    key = {Tag.ROLE: STUDY, Tag.STUDY_ID: sid}

    def create():
        run = store.client.create_run(exp, run_name=name, tags={**key, **tags, Tag.STATUS: "running"})
        store.log(run.info.run_id, params={**params, **versions(), "git_commit": git_commit()})
        return run.info.run_id

    return _one(store, exp, key, create)


def logged_trials(store: Store, exp: str, parent_id: str) -> set[str]:
    return {r.data.tags.get(Tag.TRIAL, "") for r in store.find(exp, **{Tag.ROLE: TRIAL, Tag.PARENT_STUDY: parent_id})}


def trial_run(store: Store, exp: str, parent_id: str, number, name: str, tags: dict, params: dict, metrics: dict) -> str:
    key = {Tag.ROLE: TRIAL, Tag.PARENT_STUDY: parent_id, Tag.TRIAL: str(number)}

    def create():
        run = store.client.create_run(exp, run_name=name, tags={**key, Tag.PARENT: parent_id, **tags})
        store.log(run.info.run_id, params=params, metrics=metrics)
        store.client.set_terminated(run.info.run_id, "FINISHED")
        return run.info.run_id

    return _one(store, exp, key, create)


def finish(store: Store, parent_id: str, status: str, metrics: dict | None = None, artifacts=(), tags: dict | None = None) -> None:
    """Record the study's outcome; only a complete study's run is terminated (an incomplete one may resume)."""
    if status == "complete":
        store.finish(parent_id, "complete", metrics, tags, [p for p in artifacts if Path(p).is_file()])
    else:
        store.log(parent_id, metrics=metrics or {}, tags={Tag.STATUS: status, **(tags or {})})
