"""Run the LORO protocol for registered methods: plan, execute the missing folds, collect, record.

Planning resolves every method's full config first (an unknown name or parameter fails before any
work). Each method's shared work (`Method.prepare`: backbone features, LBP codes) runs once in this
process; folds then go to a launcher (`launch`: a local pool of `jobs` processes for light folds such
as frozen deep heads, one worker per GPU with `--devices`, or SLURM through submitit) while this
process goes on with the next method. Each fold is a job folder (`identity.JobKey`) written by the
fold path (`fold.run_fold`) with `DONE` last; a run killed at any point and started again computes
only the folds without `DONE`.
The MLflow parent is marked complete only after every fold is logged (`record`), and a method whose
fold fails is recorded as failed while the other methods still run.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import metrics
from ..data.cache import load_images
from ..errors import InputError
from ..methods.base import Context, make_config
from ..methods.registry import MethodSpec, get_method
from ..paths import atomic_write_text, cache_dir
from ..protocols import Fold, get_protocol
from . import launch, outside, record, sandbox
from .configure import configure, registered_hash, require_task
from .fold import FoldError, FoldTask, check_image_size, image_size, read_fold, run_fold
from .identity import JobKey, code_hash, config_hash, task_fingerprint
from .launch import LaunchSettings
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
    launch: LaunchSettings = LaunchSettings()  # where the folds of trusted methods run (`launch`)
    task: str = "binary"  # `binary` (the paper's) or `au` (`ratspain_bench.tasks`)
    protocol: str = "loro"  # how the data is cut into folds (`ratspain_bench.protocols`)


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
    reason: str = ""  # failed: `sandbox.REASONS`' key when a fold of the method failed (`rule` the predictions rule), else ""
    rule: str = ""


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
                        opts.device, opts.sandbox, prefetch, opts.task)


def preflight(name: str, opts: RunOptions) -> dict:
    """The method's full config, checked before any work (trusted methods also run their `preflight` hook)."""
    spec = get_method(name)
    require_task(spec, opts.task, opts.sandbox)
    params = configure(spec, opts.profile, opts.overrides, opts.where_declared, opts.sandbox)
    if spec.trusted:
        from ..methods.base import make_config

        cls = spec.load()
        cls.preflight(make_config(cls.Config, None, **params))
    return params


def plan(name: str, dataset, opts: RunOptions, folds: tuple[Fold, ...] | None = None) -> Plan:
    """A method's Plan; `folds`: the protocol's folds of `dataset` when the caller planned them already."""
    spec = get_method(name)
    params = configure(spec, opts.profile, opts.overrides, opts.where_declared, opts.sandbox)
    if spec.trusted:  # kept on disk: the leaderboard reads it back without importing the method
        registered_hash(spec, opts.profile)
    else:  # the harness decodes the images an outside method asks for: never more than its worker may hold
        check_image_size(name, params, len(dataset), opts.sandbox.memory_mb)
    protocol = get_protocol(opts.protocol)
    key = JobKey(dataset.name, task_fingerprint(dataset, opts.task), name, config_hash(spec.family, params), code_hash(spec),
                 opts.seed, opts.task, protocol.key)
    return Plan(spec, params, key, folds if folds is not None else protocol.plan(dataset.table, dataset.table["image"]))


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


def fold_metrics(frame: pd.DataFrame, summary: dict) -> dict:
    m = metrics.summary(metrics.confusion(frame["y_true"], frame["y_pred"]))
    m.update({k: v for k, v in summary.items() if isinstance(v, (int, float)) and k != "subject"})
    return m


class MethodRun:
    """One method's run: its MLflow parent, the folds done earlier, the folds to compute, the result."""

    def __init__(self, p: Plan, dataset, opts: RunOptions, store: record.Store):
        self.p, self.dataset, self.opts, self.store = p, dataset, opts, store
        self.pred_path = p.key.predictions_path(opts.runs_dir)
        self.result: MethodResult | None = None
        self.todo: list[Fold] = []
        self.start = time.perf_counter()
        first = p.first_missing(opts)
        if first is not None and not p.spec.trusted:
            outside.prestart(p.task(first, opts))  # its start-up overlaps the MLflow set-up and the image loading
        parent = record.ParentRun(p.key, p.spec.family, opts.profile, p.spec.source, p.params, len(p.folds), p.spec.cite,
                                  "in-process" if p.spec.trusted else opts.sandbox.resolved(opts.device), dataset.labels_public)
        self.exp, self.parent_id, done = record.open_parent(store, parent)
        if done and self.pred_path.is_file():
            if not opts.quiet:
                print(f"[{p.spec.name}] already complete (MLflow run {self.parent_id}, code {p.key.code_hash}): skipped", file=sys.stderr)
            preds = pd.read_csv(self.pred_path, dtype={"subject": str, "image": str, "fold": str})
            self.result = MethodResult(p.spec.name, "complete", self.parent_id, self.pred_path, score_frame(preds), 0.0, "",
                                       p.key.config_hash, p.key.code_hash, True)
            return
        self.children = record.fold_runs(store, self.exp, self.parent_id)
        self.progress = Progress(p.spec.name, len(p.folds), opts.quiet)
        for f in p.folds:
            finished = read_fold(self.job(f))
            if finished is None:
                self.todo.append(f)
            else:
                self.done(f, finished[1], "done earlier (resumed)")

    def job(self, f: Fold) -> Path:
        return self.p.key.fold_dir(self.opts.runs_dir, f)

    def _config(self):
        cls = self.p.spec.load()
        return cls, make_config(cls.Config, None, **self.p.params)

    @property
    def launched(self) -> bool:
        """Its folds go to the launcher: a trusted method's, always on submitit or `--devices`; on the local pool,
        when the method says its folds are light once `prepare` ran."""
        if not self.p.spec.trusted or not self.todo:
            return False
        if self.opts.launch.launcher != "local" or self.opts.launch.devices:
            return True
        if self.opts.jobs < 2 or len(self.todo) < 2:
            return False
        cls, config = self._config()
        return cls.parallel_folds(config, self.opts.device)

    def prepare(self, images) -> None:
        """The method's shared work for every image (backbone features, LBP codes), once, in this process."""
        if self.todo and self.p.spec.trusted:
            cls, config = self._config()
            ctx = Context(seed=self.opts.seed, device=self.opts.device, profile=self.opts.profile, cache_dir=cache_dir(),
                          progress=self.progress.epoch("all"), task=self.opts.task)
            cls.prepare(config, images, self.dataset.keys, ctx)

    def done(self, f: Fold, summary: dict, info: str) -> None:
        job = self.job(f)
        frame, _ = read_fold(job)
        where = {record.Tag.WORKER: summary.get("worker"), record.Tag.WORKER_DEVICE: summary.get("worker_device")}
        record.log_fold(self.store, self.exp, self.parent_id, self.children, f.subject, self.p.spec.name, fold_metrics(frame, summary),
                        files=[job / "predictions.csv"], figures=job / "artifacts", tags={k: v for k, v in where.items() if v})
        self.progress.done(f.subject, info)

    def run_here(self, images) -> None:
        """The missing folds one after the other in this process (outside methods: each in its sandbox)."""
        for i, f in enumerate(self.todo):
            self.progress.fold(f.subject)
            summary = run_fold(self.p.task(f, self.opts, prefetch=i < len(self.todo) - 1), self.dataset, images,
                               progress=self.progress.epoch(f.subject))
            self.done(f, summary, f"fit {summary['train_seconds']:.1f}s")
        self.todo.clear()

    def fail(self, e: BaseException) -> None:
        error = str(e) if isinstance(e, (FoldError, InputError)) else f"{type(e).__name__}: {e}"
        for run in record.fold_runs(self.store, self.exp, self.parent_id).values():
            if run.data.tags.get(record.Tag.STATUS) == record.RUNNING:
                self.store.finish(run.info.run_id, record.FAILED)
        self.store.finish(self.parent_id, record.FAILED, tags={record.Tag.ERROR: error[:5000]})
        self.progress.close()
        key = self.p.key
        reason, rule = (e.reason, e.rule) if isinstance(e, FoldError) else ("", "")
        self.result = MethodResult(self.p.spec.name, "failed", self.parent_id, None, None, time.perf_counter() - self.start, error,
                                   key.config_hash, key.code_hash, reason=reason, rule=rule)

    def finish(self) -> None:
        """Every fold is done: the predictions file, the score, the parent marked complete."""
        self.progress.close()
        key, name = self.p.key, self.p.spec.name
        summaries, frames = [], []
        for f in self.p.folds:
            frame, summary = read_fold(self.job(f))
            frames.append(frame)
            summaries.append(summary)
        preds = pd.concat(frames, ignore_index=True).assign(method=name, seed=self.opts.seed)
        by_image = self.dataset.table.set_index("image")
        for column in get_protocol(self.opts.protocol).columns:  # what the protocol's board breaks the score down by
            preds[column] = preds["image"].map(by_image[column])
        score = complete_parent(self.store, self.parent_id, key, self.dataset, preds, summaries, self.opts.runs_dir, self.opts.device)
        self.result = MethodResult(name, "complete", self.parent_id, self.pred_path, score, time.perf_counter() - self.start, "",
                                   key.config_hash, key.code_hash)


FAILURES = (FoldError, InputError, sandbox.SandboxError, OSError, RuntimeError, ValueError)


def _execute(runs: list[MethodRun], dataset, opts: RunOptions) -> None:
    """Each method's shared work, in order, in this process; then its folds: those of trusted methods that the
    launcher takes (`MethodRun.launched`) go to it while this process goes on with the next method; other folds
    run here, one after the other. Only this process writes MLflow."""
    from concurrent.futures import FIRST_COMPLETED, wait

    launcher, futures = None, {}

    def drain(block: bool = False) -> None:
        if not futures:
            return
        finished, _ = wait(list(futures), timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for fut in finished:
            run, f = futures.pop(fut)
            if run.result is not None:  # failed meanwhile
                continue
            try:
                summary = fut.result()
                run.done(f, summary, f"fit {summary['train_seconds']:.1f}s")
                run.todo.remove(f)
                if not run.todo:
                    run.finish()
            except FAILURES as e:
                run.fail(e)
                for other, (r, _) in list(futures.items()):
                    if r is run:
                        other.cancel()

    try:
        for run in runs:
            if run.result is not None:
                continue
            try:
                images = load_images(dataset, image_size(run.p.params))[0] if run.todo else None
                run.prepare(images)
                if run.launched:
                    launcher = launcher or launch.make_launcher(opts.launch, opts.jobs, opts.runs_dir)
                    for f in run.todo:
                        futures[launcher.submit(run.p.task(f, opts), dataset)] = (run, f)
                else:
                    run.run_here(images)
                    run.finish()
            except FAILURES as e:
                run.fail(e)
            drain()
        while futures:
            drain(block=True)
    finally:
        if launcher is not None:
            launcher.close()


def complete_parent(store, parent_id: str, key: JobKey, dataset, preds: pd.DataFrame, summaries: list[dict], runs_dir,
                    device: str) -> dict:
    """Every fold is done: write the predictions file (`key.predictions_path`), score it, mark the parent complete with
    its metrics and artifacts (in the au task `score.json` also holds the raters' own agreement); returns the score."""
    from ..plots import confusion_png

    pred_path = key.predictions_path(runs_dir)
    pred_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pred_path.with_name(f".{pred_path.name}.{os.getpid()}.tmp")
    preds.to_csv(tmp, index=False)
    os.replace(tmp, pred_path)
    score = score_frame(preds)
    m = record.parent_metrics(score, {"train_seconds": sum(s["train_seconds"] for s in summaries), "folds_complete": len(summaries)})
    for k in sorted({k for s in summaries for k in s if k.startswith("attention_")}):  # localisation, per AU too
        vals = [s[k] for s in summaries if isinstance(s.get(k), (int, float))]
        if vals:
            m[k] = float(np.mean(vals))
    if "pose_bin" in dataset.table.columns:
        bins = dataset.table.set_index("image")["pose_bin"]
        for b, g in preds.assign(pose_bin=preds["image"].map(bins)).groupby("pose_bin"):
            cm = metrics.confusion(g["y_true"], g["y_pred"])
            m[f"pose_{b}_f1"], m[f"pose_{b}_accuracy"], m[f"pose_{b}_n"] = metrics.f1(cm), metrics.accuracy(cm), cm.n
    logged = score
    ceiling = _human_ceiling(dataset, preds) if "action_units" in score else None
    if ceiling:
        m.update(record.agreement_metrics(ceiling, "ceiling_", counts=False))
        logged = {**score, "human_ceiling": ceiling}
    out = key.root(runs_dir) / "summary"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "score.json", json.dumps(logged, indent=1))
    pd.DataFrame([{"subject": s, **d} for s, d in score["per_subject"].items()]).to_csv(out / "per_subject.csv", index=False)
    p = score["pooled"]
    confusion_png(out / "confusion_matrix.png", p["tp"], p["fp"], p["fn"], p["tn"], f"{preds['method'].iloc[0]} (pooled over folds)")
    (out / "predictions.csv").write_bytes(pred_path.read_bytes())
    store.finish(parent_id, record.COMPLETE, metrics=m, tags={record.Tag.HARDWARE: record.hardware(_device_used(device))},
                 files=[out / f for f in ("predictions.csv", "score.json", "per_subject.csv", "confusion_matrix.png")])
    return score


def _human_ceiling(dataset, preds) -> dict | None:
    """The au task: the raters' own agreement on the scored images (`metrics_au.human_ceiling`); None without rater columns."""
    from ..metrics_au import human_ceiling

    return human_ceiling(dataset.table[dataset.table["image"].isin(set(preds["image"]))])


def _device_used(device: str) -> str:
    if device != "auto":
        return device
    torch = sys.modules.get("torch")
    return "cuda" if torch is not None and torch.cuda.is_available() else "cpu"


def check_methods(names: list[str], opts: RunOptions) -> dict[str, str]:
    """Every configuration error (unknown name, bad parameter, no sandbox, weights that cannot be had) before any work:
    an InputError. A problem of an outside method's own folder or code fails that method alone: {name: reason}
    (an InputError still when every method asked for has one)."""
    sandbox.require(opts.sandbox, [n for n in names if not get_method(n).trusted], opts.device)
    launch.check(opts.launch)
    broken = {}
    for n in names:
        try:
            preflight(n, opts)
        except InputError as e:
            if get_method(n).trusted:
                raise
            broken[n] = str(e)
    if broken and len(broken) == len(names):
        raise InputError("; ".join(broken.values()))
    return broken


def _failed(name: str, error: str) -> MethodResult:
    return MethodResult(name, "failed", "", None, None, 0.0, error)


def run_methods(names: list[str], dataset, opts: RunOptions, broken: dict | None = None) -> list[MethodResult]:
    """Check every method (unless the caller did: `broken` is what `check_methods` gave), plan them, then run them (`_execute`: shared work in order, light
    folds of trusted methods side by side in the local pool). An outside method that cannot be checked, planned or
    opened in MLflow fails alone, with its reason."""
    failed = dict(broken) if broken is not None else check_methods(names, opts)
    folds = get_protocol(opts.protocol).plan(dataset.table, dataset.table["image"])  # a protocol the data cannot hold
    dataset.require_images()  # fails the command before any work; every method's plan shares these folds
    plans = []
    for n in names:
        if n in failed:
            continue
        try:
            plans.append(plan(n, dataset, opts, folds))
        except InputError as e:
            if get_method(n).trusted:
                raise
            failed[n] = str(e)
    first_outside = next((p for p in plans if not p.spec.trusted), None)
    if first_outside is not None:  # its first worker starts while the MLflow store opens
        first = first_outside.first_missing(opts)
        if first is not None:
            outside.prestart(first_outside.task(first, opts))
    try:
        store = record.Store(opts.runs_dir, opts.tracking_uri)
        runs = []
        for p in plans:
            try:
                runs.append(MethodRun(p, dataset, opts, store))
            except InputError as e:
                if p.spec.trusted:
                    raise
                failed[p.spec.name] = str(e)
        _execute(runs, dataset, opts)
        results = {r.p.spec.name: r.result for r in runs}
        return [results.get(n) or _failed(n, failed[n]) for n in names]
    finally:
        sandbox.close_spares()
