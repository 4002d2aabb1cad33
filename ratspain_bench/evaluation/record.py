"""The MLflow run record: the schema, its one writer and its one reader.

Store: `--tracking-uri`, else `$MLFLOW_TRACKING_URI`, else a SQLite store `RUNS_DIR/mlflow.db` with
artifacts in `RUNS_DIR/artifacts` (`tracking_uri`, the only place this is decided).

Schema (names are the `Tag` constants; the contract's are `ratspain.role` and `ratspain.subject`):
- experiment `ratspain/<dataset>` (studies: `ratspain-study/<dataset>`);
- a parent run per (method, dataset, config, code, seed, task): tags `role=parent`, `method`, `dataset`,
  `dataset_fingerprint`, `seed`, `config_hash`, `code_hash`, `task` (binary | au), `protocol` (another protocol
  than loro, whose runs live in experiments `ratspain-protocols/<dataset>`), `profile`, `source`, `sandbox`
  (in-process | bwrap | none), `labels_public` (true | false: whether anyone can recompute the dataset's labels),
  `status` (running | complete | failed), `folds_expected`,
  `hardware`, `error`, `cite`; params `method`, `family`, `seed`, `profile`, `protocol`, `dataset`,
  `dataset_fingerprint`, `code_hash`, `task`, `git_commit`, `version.<package>`, `cfg.<parameter>`; metrics
  `pooled_f1`, `pooled_accuracy`, `pooled_balanced_accuracy`, `pooled_mcc`, `mean_f1`,
  `mean_accuracy`, `train_seconds`, `folds_complete`, `pose_<bin>_{f1,accuracy,n}`, in the au task
  `au_<name>_{accuracy,macro_f1,qwk,n}`, `rgs_{icc_a1,pearson_r,mae,n}` and, where the dataset has rater
  columns, the raters' own agreement `ceiling_au_<name>_{alpha,qwk,accuracy}`, `ceiling_rgs_{icc_a1,pearson_r,mae}`; artifacts
  `predictions.csv`, `score.json`, `per_subject.csv`, `confusion_matrix.png`;
- a child run per fold: tags `role=fold`, `subject`, `status`, `mlflow.parentRunId`, and where a launcher
  ran it `worker` (host:pid) and `worker_device` (the GPU it saw); the fold's
  metrics; artifacts `predictions.csv` and the method's `figures/`.
A parent is `complete` only once every fold is logged, so a killed run is never counted.
"""
from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd

from ..errors import InputError

ENV_URI = "MLFLOW_TRACKING_URI"
EXPERIMENT_PREFIX = "ratspain/"
PROTOCOL_EXPERIMENT_PREFIX = "ratspain-protocols/"  # runs of another protocol than loro: never beside the board's
STUDY_EXPERIMENT_PREFIX = "ratspain-study/"
PACKAGES = ("ratspain_bench", "torch", "timm", "scikit-learn", "scikit-image", "numpy", "mlflow", "optuna")
POOLED = ("f1", "accuracy", "balanced_accuracy", "mcc")


class Tag:
    ROLE = "ratspain.role"
    METHOD = "ratspain.method"
    DATASET = "ratspain.dataset"
    FINGERPRINT = "ratspain.dataset_fingerprint"
    SEED = "ratspain.seed"
    CONFIG_HASH = "ratspain.config_hash"
    CODE_HASH = "ratspain.code_hash"
    PROFILE = "ratspain.profile"
    SOURCE = "ratspain.source"
    SANDBOX = "ratspain.sandbox"
    STATUS = "ratspain.status"
    FOLDS_EXPECTED = "ratspain.folds_expected"
    HARDWARE = "ratspain.hardware"
    ERROR = "ratspain.error"
    CITE = "ratspain.cite"
    SUBJECT = "ratspain.subject"
    WORKER = "ratspain.worker"
    WORKER_DEVICE = "ratspain.worker_device"
    TASK = "ratspain.task"
    PROTOCOL = "ratspain.protocol"  # `Protocol.key`, on runs of another protocol than loro
    LABELS_PUBLIC = "ratspain.labels_public"
    PARENT = "mlflow.parentRunId"
    # studies (experiment `ratspain-study/<dataset>`; roles `study` and `trial`)
    STUDY_KIND = "ratspain.study_kind"
    STUDY = "ratspain.study"
    STUDY_ID = "ratspain.study_id"
    PARENT_STUDY = "ratspain.parent_study"
    TRIAL = "ratspain.trial"
    TRIAL_STATE = "ratspain.trial_state"
    SCORED_ON = "ratspain.scored_on"
    STORAGE = "ratspain.storage"
    PARAM = "ratspain.param"
    VALUE = "ratspain.value"
    OUTER = "ratspain.outer"


PARENT, FOLD, STUDY, TRIAL = "parent", "fold", "study", "trial"
NESTED = "nested LORO"  # the source of a parent run that records a `study tune` result (ranked as its own row)
RUNNING, COMPLETE, FAILED, ABANDONED = "running", "complete", "failed", "abandoned"


def tracking_uri(runs_dir, uri: str | None = None) -> str:
    """`uri`, else $MLFLOW_TRACKING_URI, else a SQLite store `RUNS_DIR/mlflow.db`."""
    if uri:
        return uri
    if os.environ.get(ENV_URI):
        return os.environ[ENV_URI]
    return f"sqlite:///{Path(runs_dir).resolve() / 'mlflow.db'}"


def local_store_path(uri: str) -> Path | None:
    """The file or folder behind a local store URI (sqlite or file), None for a server."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):].split("?")[0])
    if uri.startswith("file:"):
        return Path(urlparse(uri).path)
    if "://" not in uri:
        return Path(uri)
    return None


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
        root = Path(__file__).resolve().parents[2]
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def hardware(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(0)
    return f"{device} x{os.cpu_count()}"


def probe_server(uri: str, timeout: float = 5.0) -> None:
    """A tracking server that does not answer its `/health` fails at once (the MLflow client would retry for minutes)."""
    from urllib.error import HTTPError, URLError
    from urllib.request import urlopen

    try:
        with urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            return
    except HTTPError:  # it answers (a proxy or an older server without /health): the client will tell the rest
        return
    except (URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise InputError(f"{uri}: the MLflow tracking server does not answer ({reason})") from None


def _quiet_logs() -> None:
    """MLflow's info logs and its progress bars (each artifact the harness reads or writes is a "download") stay off
    the user's terminal."""
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.store.sql_alchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


class Store:
    """One MLflow store: its URI, a client, and the experiments of its datasets.

    Workers opening a fresh local SQLite store at once would race to create its tables, so the first
    use is serialised by a lock file next to it and retried."""

    def __init__(self, runs_dir="ratspain-runs", uri: str | None = None, attempts: int = 5):
        from mlflow.tracking import MlflowClient

        _quiet_logs()
        self.runs_dir = Path(runs_dir)
        self.uri = tracking_uri(runs_dir, uri)
        if self.uri.startswith(("http://", "https://")):
            probe_server(self.uri)
        path = local_store_path(self.uri)
        if path is not None and self.uri.startswith("sqlite:"):
            path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(attempts):
            try:
                with _init_lock(path if self.uri.startswith("sqlite:") else None):  # the client creates the tables
                    self.client = MlflowClient(self.uri)
                    self.client.search_experiments(max_results=1)
                break
            except Exception as e:
                if attempt == attempts - 1:
                    raise InputError(f"{self.uri}: cannot open the MLflow store ({type(e).__name__}: "
                                     f"{str(e).splitlines()[0] if str(e) else ''})") from None
                time.sleep(0.5 * (attempt + 1))

    @property
    def local(self) -> bool:
        return local_store_path(self.uri) is not None

    def experiment(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        artifacts = (self.runs_dir.resolve() / "artifacts").as_uri() if self.local else None
        try:
            return self.client.create_experiment(name, artifact_location=artifacts)
        except Exception:  # created meanwhile by another process
            return self.client.get_experiment_by_name(name).experiment_id

    def find(self, exp: str, **tags) -> list:
        """Runs of an experiment whose tags equal `tags` (Tag constants as keys)."""
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        return self.client.search_runs([exp], filter_string=query, max_results=5000)

    def log(self, run_id: str, metrics: dict | None = None, params: dict | None = None, tags: dict | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id, metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
            params=[Param(k, str(v)[:6000]) for k, v in (params or {}).items()],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()])

    def finish(self, run_id: str, status: str, metrics: dict | None = None, tags: dict | None = None, files=()) -> None:
        """Log the last metrics, tags and files, then mark the run FINISHED (complete) or FAILED."""
        for f in files:
            self.client.log_artifact(run_id, str(f))
        self.log(run_id, metrics=metrics, tags={Tag.STATUS: status, **(tags or {})})
        self.client.set_terminated(run_id, "FINISHED" if status == COMPLETE else "FAILED" if status == FAILED else "KILLED")


class _init_lock:
    def __init__(self, db: Path | None):
        self.path = None if db is None else db.with_suffix(".init.lock")

    def __enter__(self):
        if self.path is not None:
            import fcntl

            self.f = open(self.path, "a")
            fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        if self.path is not None:
            import fcntl

            fcntl.flock(self.f, fcntl.LOCK_UN)
            self.f.close()


# ---------------------------------------------------------------- the writer


@dataclass(frozen=True)
class ParentRun:
    """Everything a parent run records before its folds: identity (`key`, an `identity.JobKey`) and description."""

    key: object
    family: str
    profile: str
    source: str
    params: dict
    folds_expected: int
    cite: str = ""
    sandbox: str = "in-process"
    labels_public: bool | None = None  # the dataset's (`Dataset.labels_public`); None: not known (no tag)

    def identity_tags(self) -> dict:
        k = self.key
        task = {Tag.TASK: k.task} if k.task != "binary" else {}  # binary parents from before the au task have no such tag
        protocol = {Tag.PROTOCOL: k.protocol} if k.protocol else {}
        return {Tag.ROLE: PARENT, Tag.METHOD: k.method, Tag.FINGERPRINT: k.fingerprint, Tag.SEED: str(k.seed),
                Tag.CONFIG_HASH: k.config_hash, Tag.CODE_HASH: k.code_hash, **task, **protocol}


def open_parent(store: Store, run: ParentRun) -> tuple[str, str, bool]:
    """(experiment id, parent run id, already complete). A parent with the same identity is reused."""
    from ..protocols import PROTOCOL_VERSION

    k = run.key
    exp = store.experiment((PROTOCOL_EXPERIMENT_PREFIX if k.protocol else EXPERIMENT_PREFIX) + k.dataset)
    existing = store.find(exp, **run.identity_tags())
    done = next((r for r in existing if r.data.tags.get(Tag.STATUS) == COMPLETE), None)
    if done is not None:
        return exp, done.info.run_id, True
    if existing:
        parent_id = existing[0].info.run_id
    else:
        name = (f"{k.method} seed {k.seed}" + ("" if k.task == "binary" else f" ({k.task} task)")
                + (f" [{k.protocol}]" if k.protocol else ""))
        parent = store.client.create_run(exp, run_name=name, tags={Tag.TASK: k.task,
            **run.identity_tags(), Tag.DATASET: k.dataset, Tag.PROFILE: run.profile, Tag.SOURCE: run.source,
            Tag.SANDBOX: run.sandbox, Tag.FOLDS_EXPECTED: str(run.folds_expected), Tag.CITE: run.cite[:5000]})
        parent_id = parent.info.run_id
        try:
            store.log(parent_id, params={"method": k.method, "family": run.family, "seed": k.seed, "profile": run.profile,
                                         "task": k.task, "protocol": k.protocol or PROTOCOL_VERSION, "dataset": k.dataset,
                                         "dataset_fingerprint": k.fingerprint, "code_hash": k.code_hash, "git_commit": git_commit(),
                                         **versions(), **{f"cfg.{n}": v for n, v in run.params.items()}})
        except Exception as e:  # noqa: BLE001 - MLflow refused a parameter: this method fails, its parent is closed
            why = f"{k.method}: MLflow refused its parameters ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
            store.finish(parent_id, FAILED, tags={Tag.ERROR: why[:5000]})
            raise InputError(why) from None
    public = {} if run.labels_public is None else {Tag.LABELS_PUBLIC: str(bool(run.labels_public)).lower()}
    store.log(parent_id, tags={Tag.STATUS: RUNNING, **public})
    return exp, parent_id, False


def fold_runs(store: Store, exp: str, parent_id: str) -> dict[str, object]:
    """The fold children of a parent, by held-out subject."""
    return {r.data.tags.get(Tag.SUBJECT): r for r in store.find(exp, **{Tag.ROLE: FOLD, Tag.PARENT: parent_id})}


def log_fold(store: Store, exp: str, parent_id: str, children: dict, subject: str, method: str, metrics: dict,
             files=(), figures: Path | None = None, tags: dict | None = None) -> None:
    """Log a finished fold as a child run (once; a stale child of a killed run is replaced)."""
    old = children.get(subject)
    if old is not None and old.data.tags.get(Tag.STATUS) == COMPLETE:
        return
    if old is not None:
        store.finish(old.info.run_id, ABANDONED)
    run = store.client.create_run(exp, run_name=f"{method} fold {subject}", tags={
        Tag.PARENT: parent_id, Tag.ROLE: FOLD, Tag.SUBJECT: subject, Tag.STATUS: RUNNING, **(tags or {})})
    if figures is not None and figures.is_dir() and any(figures.iterdir()):
        store.client.log_artifacts(run.info.run_id, str(figures), "figures")
    store.finish(run.info.run_id, COMPLETE, metrics=metrics, files=files)
    children[subject] = store.client.get_run(run.info.run_id)


def parent_metrics(score: dict, extra: dict | None = None) -> dict:
    """The parent's metrics from a `metrics.score` object (an au-task score also gives `au_<name>_<metric>` and
    `rgs_<metric>`, pooled; undefined values are left out)."""
    m = {f"pooled_{k}": score["pooled"][k] for k in POOLED}
    m.update({"mean_f1": score["mean_over_subjects"]["f1"], "mean_accuracy": score["mean_over_subjects"]["accuracy"]})
    if score.get("action_units"):
        m.update(agreement_metrics(score["action_units"]))
    return {**m, **(extra or {})}


def agreement_metrics(blocks: dict, prefix: str = "", counts: bool = True) -> dict:
    """An `au`/`rgs` pair of `metrics_au` blocks (a score's, or the raters' own agreement with prefix `ceiling_` and
    no counts) as metrics `<prefix>au_<name>_<metric>` and `<prefix>rgs_<metric>`, pooled; undefined ones left out."""
    keep = lambda k, v: v is not None and (counts or k != "n")  # noqa: E731
    m = {f"{prefix}au_{au}_{k}": v for au, d in blocks["au"].items() for k, v in d.items() if keep(k, v)}
    m.update({f"{prefix}rgs_{k}": v for k, v in blocks["rgs"].items() if keep(k, v)})
    return m


# ---------------------------------------------------------------- the reader


@dataclass(frozen=True)
class FoldRecord:
    run_id: str
    subject: str
    status: str
    metrics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RunRecord:
    """A parent run as read back: one (method, dataset, config, code, seed)."""

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
    code_hash: str = ""
    sandbox: str = ""
    task: str = "binary"
    labels_public: str = ""  # "true" | "false" | "" (recorded before the tag existed)
    protocol: str = ""  # `Protocol.key`; "" for loro

    @property
    def complete_subjects(self) -> set[str]:
        return {f.subject for f in self.folds if f.status == COMPLETE}


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


def _load_predictions(client, run, tmp: Path) -> tuple[pd.DataFrame | None, str]:
    """The run's `predictions.csv` artifact (read in place from a local artifact store, else downloaded), validated."""
    from .predictions import read_predictions

    root = run.info.artifact_uri or ""
    local = None
    if root.startswith("file:") or (root and "://" not in root):
        candidate = Path(urlparse(root).path if root.startswith("file:") else root) / "predictions.csv"
        local = candidate if candidate.is_file() else None
    if local is None:
        try:
            local = client.download_artifacts(run.info.run_id, "predictions.csv", str(tmp / run.info.run_id))
        except Exception as e:  # missing artifact or unreachable artifact store: the run cannot be scored
            return None, f"predictions.csv artifact not readable ({type(e).__name__})"
    try:
        t = read_predictions(local).table
    except InputError as e:
        return None, f"predictions.csv: {str(e).split(': ', 1)[-1]}"
    frame = t.drop(columns=["line"])
    if frame["image"].duplicated().any():
        return None, f"predictions.csv: image {frame.loc[frame['image'].duplicated(), 'image'].iloc[0]!r} appears twice"
    if run.data.tags.get(Tag.PROTOCOL):  # another protocol's file also carries the columns its board breaks scores down by
        raw = pd.read_csv(local, dtype=str, keep_default_na=False)
        extra = [c for c in raw.columns if c not in frame.columns]
        frame = frame.merge(raw[["image", *extra]], on="image", how="left") if extra else frame
    return frame, ""


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _record(run, exp_name: str, folds: list, predictions, problem: str) -> RunRecord:
    tags, params = run.data.tags, run.data.params
    return RunRecord(
        run_id=run.info.run_id, experiment_id=run.info.experiment_id,
        dataset=tags.get(Tag.DATASET) or params.get("dataset") or exp_name.removeprefix(EXPERIMENT_PREFIX),
        fingerprint=tags.get(Tag.FINGERPRINT) or params.get("dataset_fingerprint", ""),
        method=tags.get(Tag.METHOD) or params.get("method", "?"), family=params.get("family", ""),
        seed=tags.get(Tag.SEED) or params.get("seed", ""), profile=tags.get(Tag.PROFILE) or params.get("profile", ""),
        config_hash=tags.get(Tag.CONFIG_HASH) or "|".join(f"{k}={v}" for k, v in sorted(params.items()) if k.startswith("cfg.")),
        source=tags.get(Tag.SOURCE, ""), status=tags.get(Tag.STATUS, "unknown"),
        folds_expected=_int_or_none(tags.get(Tag.FOLDS_EXPECTED)), hardware=tags.get(Tag.HARDWARE, ""),
        start_time=int(run.info.start_time or 0), metrics=dict(run.data.metrics),
        folds=tuple(FoldRecord(f.info.run_id, f.data.tags.get(Tag.SUBJECT, ""), f.data.tags.get(Tag.STATUS, "unknown"),
                               dict(f.data.metrics)) for f in folds),
        predictions=predictions, error=tags.get(Tag.ERROR, ""), predictions_problem=problem,
        code_hash=tags.get(Tag.CODE_HASH, ""), sandbox=tags.get(Tag.SANDBOX, ""), task=tags.get(Tag.TASK, "binary"),
        labels_public=tags.get(Tag.LABELS_PUBLIC, ""), protocol=tags.get(Tag.PROTOCOL, ""))


def fetch_run(uri: str, run_id: str) -> RunRecord:
    """One parent run as `fetch_runs` reads it (folds and predictions with it)."""
    from mlflow.tracking import MlflowClient

    _quiet_logs()
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    exp = client.get_experiment(run.info.experiment_id)
    folds = [f for f in _search_all(client, [exp.experiment_id], f"tags.`{Tag.ROLE}` = '{FOLD}'")
             if f.data.tags.get(Tag.PARENT) == run_id]
    with tempfile.TemporaryDirectory(prefix="ratspain-run-") as tmp:
        preds, problem = _load_predictions(client, run, Path(tmp)) if run.data.tags.get(Tag.STATUS) == COMPLETE else (None, "")
    return _record(run, exp.name, folds, preds, problem)


def fetch_runs(uri: str) -> list[RunRecord]:
    """Every parent run in the store, with fold children and (for complete runs) predictions."""
    from mlflow.tracking import MlflowClient

    path = local_store_path(uri)
    if path is not None and not path.exists():
        raise InputError(f"{path}: no MLflow store here (run `ratspain-bench run` first, or pass --runs-dir/--tracking-uri)")
    if uri.startswith(("http://", "https://")):
        probe_server(uri)
    _quiet_logs()
    client = MlflowClient(uri)
    try:
        experiments = _experiments(client)
    except Exception as e:
        raise InputError(f"{uri}: cannot read the MLflow store ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    records = []
    with tempfile.TemporaryDirectory(prefix="ratspain-leaderboard-") as tmp:
        for exp in experiments:
            parents = _search_all(client, [exp.experiment_id], f"tags.`{Tag.ROLE}` = '{PARENT}'")
            if not parents:
                continue
            children: dict[str, list] = {}
            for f in _search_all(client, [exp.experiment_id], f"tags.`{Tag.ROLE}` = '{FOLD}'"):
                children.setdefault(f.data.tags.get(Tag.PARENT, ""), []).append(f)
            for p in parents:
                preds, problem = (None, "")
                if p.data.tags.get(Tag.STATUS) == COMPLETE:
                    preds, problem = _load_predictions(client, p, Path(tmp))
                records.append(_record(p, exp.name, children.get(p.info.run_id, []), preds, problem))
    return records
