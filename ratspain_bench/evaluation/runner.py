"""Run the LORO protocol for registered methods: plan, execute the missing folds, collect, record.

Planning resolves every method's full config first (an unknown name or parameter fails before any
work). Each fold is a job folder (`identity.JobKey`) written by the fold path (`fold.run_fold`) with
`DONE` last; a run killed at any point and started again computes only the folds without `DONE`.
The MLflow parent is marked complete only after every fold is logged (`record`), and a method whose
fold fails is recorded as failed while the other methods still run.
"""
from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import metrics
from ..data.cache import load_images
from ..errors import InputError
from ..methods.registry import MethodSpec, get_method
from ..paths import atomic_write_text
from ..protocol import Fold, leave_one_subject_out
from . import record, sandbox
from .configure import configure
from .fold import FoldError, FoldTask, image_size, read_fold, run_fold
from .identity import JobKey, code_hash, config_hash
from .predictions import score_frame
from .sandbox import SandboxSettings


@dataclass(frozen=True)
class RunOptions:
    profile: str = "quick"
    seed: int = 0
    device: str = "auto"
    runs_dir: Path = Path("ratspain-runs")
    tracking_uri: str | None = None
    jobs: int = 1
    quiet: bool = False
    overrides: dict = field(default_factory=dict)  # --set: every method must declare each name
    where_declared: dict = field(default_factory=dict)  # --weights/--finetune: only methods that declare them
    sandbox: SandboxSettings = SandboxSettings()


@dataclass(frozen=True)
class MethodResult:
    method: str
    status: str  # complete | failed
    run_id: str
    predictions: Path | None
    score: dict | None
    seconds: float
    error: str = ""
    config_hash: str = ""
    code_hash: str = ""
    skipped: bool = False  # complete before this call: nothing was computed


@dataclass(frozen=True)
class Plan:
    """A method ready to run: its full config and the identity of its results."""

    spec: MethodSpec
    params: dict
    key: JobKey
    folds: tuple[Fold, ...]

    def first_missing(self, opts: RunOptions) -> Fold | None:
        return next((f for f in self.folds if not (self.key.fold_dir(opts.runs_dir, f) / "DONE").is_file()), None)

    def task(self, fold: Fold, opts: RunOptions, prefetch: bool = False) -> FoldTask:
        return FoldTask(self.spec, self.params, fold, self.key.fold_dir(opts.runs_dir, fold), opts.seed, opts.profile,
                        opts.device, opts.sandbox, prefetch)


def preflight(name: str, opts: RunOptions) -> dict:
    """The method's full config, checked before any work (trusted methods also run their `preflight` hook)."""
    spec = get_method(name)
    params = configure(spec, opts.profile, opts.overrides, opts.where_declared, opts.sandbox)
    if spec.trusted:
        from ..methods.base import make_config

        cls = spec.load()
        cls.preflight(make_config(cls.Config, None, **params))
    return params


def plan(name: str, dataset, opts: RunOptions) -> Plan:
    spec = get_method(name)
    params = configure(spec, opts.profile, opts.overrides, opts.where_declared, opts.sandbox)
    key = JobKey(dataset.name, dataset.fingerprint, name, config_hash(spec.family, params), code_hash(spec), opts.seed)
    return Plan(spec, params, key, leave_one_subject_out(dataset.table["subject"], dataset.table["image"]))


# ---------------------------------------------------------------- progress


class Progress:
    """A tqdm bar over folds on a terminal; plain log lines with --quiet or when not a terminal."""

    def __init__(self, method: str, total: int, quiet: bool):
        self.method, self.quiet = method, quiet or not sys.stderr.isatty()
        self.bar = None
        if not self.quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=method, unit="fold", leave=True, dynamic_ncols=True)

    def fold(self, subject: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix(fold=subject)

    def epoch(self, subject: str):
        def report(epoch=None, epochs=None, loss=None, stage=None, **_):
            if stage is not None:  # a long step before training, e.g. computing backbone features
                if self.bar is not None:
                    self.bar.set_postfix(fold=subject, stage=stage)
                else:
                    print(f"[{self.method}] fold {subject}: {stage}", file=sys.stderr, flush=True)
            elif self.bar is not None:
                self.bar.set_postfix(fold=subject, epoch=f"{epoch}/{epochs}", loss=None if loss is None else f"{loss:.3f}")
        return report

    def done(self, subject: str, info: str) -> None:
        if self.bar is not None:
            self.bar.update(1)
        else:
            print(f"[{self.method}] fold {subject}: {info}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------- execution


def _pool_fold(args) -> dict:
    """A fold in a worker process of the local pool (the dataset object itself travels with the task)."""
    task, dataset, threads = args
    import torch

    torch.set_num_threads(threads)
    images, _ = load_images(dataset, image_size(task.params))
    return run_fold(task, dataset, images)


def _execute(p: Plan, todo: list[Fold], dataset, opts: RunOptions, progress: Progress, on_done) -> None:
    if opts.jobs > 1 and len(todo) > 1:
        import multiprocessing as mp

        threads = max(1, (os.cpu_count() or 1) // opts.jobs)
        with ProcessPoolExecutor(opts.jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(_pool_fold, (p.task(f, opts), dataset, threads)): f for f in todo}
            for fut in as_completed(futures):
                summary = fut.result()
                on_done(futures[fut], summary)
        return
    images, _ = load_images(dataset, image_size(p.params)) if todo else (None, None)
    for i, f in enumerate(todo):
        progress.fold(f.subject)
        summary = run_fold(p.task(f, opts, prefetch=i < len(todo) - 1), dataset, images, progress=progress.epoch(f.subject))
        on_done(f, summary)


def _fold_metrics(frame: pd.DataFrame, summary: dict) -> dict:
    m = metrics.summary(metrics.confusion(frame["y_true"], frame["y_pred"]))
    m.update({k: v for k, v in summary.items() if isinstance(v, (int, float)) and k != "subject"})
    return m


def run_method(p: Plan, dataset, opts: RunOptions, store: record.Store) -> MethodResult:
    name, key = p.spec.name, p.key
    pred_path = key.predictions_path(opts.runs_dir)
    parent = record.ParentRun(key, p.spec.family, opts.profile, p.spec.source, p.params, len(p.folds), p.spec.cite,
                              "in-process" if p.spec.trusted else opts.sandbox.mode)
    first = p.first_missing(opts)
    if first is not None and not p.spec.trusted and opts.jobs == 1:
        sandbox.prestart(p.task(first, opts))  # its imports overlap the MLflow set-up and the image loading below
    exp, parent_id, done = record.open_parent(store, parent)
    if done and pred_path.is_file():
        if not opts.quiet:
            print(f"[{name}] already complete (MLflow run {parent_id}, code {key.code_hash}): skipped", file=sys.stderr)
        preds = pd.read_csv(pred_path, dtype={"subject": str, "image": str, "fold": str})
        return MethodResult(name, "complete", parent_id, pred_path, score_frame(preds), 0.0, "", key.config_hash, key.code_hash, True)
    children = record.fold_runs(store, exp, parent_id)
    progress = Progress(name, len(p.folds), opts.quiet)
    start = time.perf_counter()

    def logged(f: Fold, summary: dict, info: str) -> None:
        frame, _ = read_fold(key.fold_dir(opts.runs_dir, f))
        job = key.fold_dir(opts.runs_dir, f)
        record.log_fold(store, exp, parent_id, children, f.subject, name, _fold_metrics(frame, summary),
                        files=[job / "predictions.csv"], figures=job / "artifacts")
        progress.done(f.subject, info)

    try:
        todo = []
        for f in p.folds:
            finished = read_fold(key.fold_dir(opts.runs_dir, f))
            if finished is None:
                todo.append(f)
            else:
                logged(f, finished[1], "done earlier (resumed)")
        _execute(p, todo, dataset, opts, progress, lambda f, s: logged(f, s, f"fit {s['train_seconds']:.1f}s"))
    except (FoldError, InputError, sandbox.SandboxError, OSError, RuntimeError, ValueError) as e:
        error = str(e) if isinstance(e, (FoldError, InputError)) else f"{type(e).__name__}: {e}"
        for run in record.fold_runs(store, exp, parent_id).values():
            if run.data.tags.get(record.Tag.STATUS) == record.RUNNING:
                store.finish(run.info.run_id, record.FAILED)
        store.finish(parent_id, record.FAILED, tags={record.Tag.ERROR: error[:5000]})
        return MethodResult(name, "failed", parent_id, None, None, time.perf_counter() - start, error, key.config_hash, key.code_hash)
    finally:
        progress.close()
    summaries, frames = [], []
    for f in p.folds:
        frame, summary = read_fold(key.fold_dir(opts.runs_dir, f))
        frames.append(frame)
        summaries.append(summary)
    preds = pd.concat(frames, ignore_index=True).assign(method=name, seed=opts.seed)
    pred_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pred_path.with_name(f".{pred_path.name}.{os.getpid()}.tmp")
    preds.to_csv(tmp, index=False)
    os.replace(tmp, pred_path)
    score = score_frame(preds)
    _complete_parent(store, parent_id, dataset, preds, score, summaries, key.root(opts.runs_dir), pred_path, opts.device)
    return MethodResult(name, "complete", parent_id, pred_path, score, time.perf_counter() - start, "", key.config_hash, key.code_hash)


def _complete_parent(store, parent_id, dataset, preds, score, summaries, root: Path, pred_path: Path, device: str) -> None:
    from ..plots import confusion_png

    m = record.parent_metrics(score, {"train_seconds": sum(s["train_seconds"] for s in summaries), "folds_complete": len(summaries)})
    for k in ("attention_au_share", "attention_au_share_chance"):
        vals = [s[k] for s in summaries if k in s]
        if vals:
            m[k] = float(np.mean(vals))
    if "pose_bin" in dataset.table.columns:
        bins = dataset.table.set_index("image")["pose_bin"]
        for b, g in preds.assign(pose_bin=preds["image"].map(bins)).groupby("pose_bin"):
            cm = metrics.confusion(g["y_true"], g["y_pred"])
            m[f"pose_{b}_f1"], m[f"pose_{b}_accuracy"], m[f"pose_{b}_n"] = metrics.f1(cm), metrics.accuracy(cm), cm.n
    out = root / "summary"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "score.json", json.dumps(score, indent=1))
    pd.DataFrame([{"subject": s, **d} for s, d in score["per_subject"].items()]).to_csv(out / "per_subject.csv", index=False)
    p = score["pooled"]
    confusion_png(out / "confusion_matrix.png", p["tp"], p["fp"], p["fn"], p["tn"], f"{preds['method'].iloc[0]} (pooled over folds)")
    (out / "predictions.csv").write_bytes(pred_path.read_bytes())
    store.finish(parent_id, record.COMPLETE, metrics=m, tags={record.Tag.HARDWARE: record.hardware(_device_used(device))},
                 files=[out / f for f in ("predictions.csv", "score.json", "per_subject.csv", "confusion_matrix.png")])


def _device_used(device: str) -> str:
    if device != "auto":
        return device
    torch = sys.modules.get("torch")
    return "cuda" if torch is not None and torch.cuda.is_available() else "cpu"


def check_methods(names: list[str], opts: RunOptions) -> None:
    """Every configuration error (unknown name, broken submission, bad parameter, no sandbox, weights that
    cannot be had) before any work."""
    sandbox.require(opts.sandbox, [n for n in names if not get_method(n).trusted])
    for n in names:
        preflight(n, opts)


def run_methods(names: list[str], dataset, opts: RunOptions, checked: bool = False) -> list[MethodResult]:
    """Check every method (unless the caller did), plan them, then run them one after the other."""
    if not checked:
        check_methods(names, opts)
    dataset.require_images()
    plans = [plan(n, dataset, opts) for n in names]
    outside = next((p for p in plans if not p.spec.trusted), None)
    if outside is not None and opts.jobs == 1:  # its first worker imports the method while the MLflow store opens
        first = outside.first_missing(opts)
        if first is not None:
            sandbox.prestart(outside.task(first, opts))
    try:
        store = record.Store(opts.runs_dir, opts.tracking_uri)
        return [run_method(p, dataset, opts, store) for p in plans]
    finally:
        sandbox.close_spares()
