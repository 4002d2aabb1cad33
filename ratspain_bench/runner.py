"""Run the LORO protocol for registered methods, resumably, and track everything in MLflow.

Each (dataset, method config, seed, fold) is a job with its own folder under `RUNS_DIR/jobs/`; its
predictions are written to a temporary name and renamed, then a `DONE` marker is written last. A run
killed at any point and started again redoes only the folds without `DONE`, and a parent MLflow run
is marked `complete` only after every fold is logged, so a half run is never counted.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import metrics, tracking
from .data import Dataset, load_dataset
from .data.cache import load_images
from .methods.base import Context, TestSet, TrainSet, config_params, image_size, public_name
from .methods.registry import MethodSpec, get_method
from .paths import atomic_write_text, cache_dir
from .protocol import Fold, leave_one_subject_out

PAPER_SUITE = ("lbp-r1p8-4x4", "lbp-r1p8-8x8", "lbp-r1p8-16x16", "lbp-r3p8-4x4", "lbp-r3p8-8x8", "lbp-r3p8-16x16",
               "resnet18", "painseeker-noprsc", "painseeker")
# The quick suite: the paper's nine methods in the CPU-sized `quick` profile, then two deep rows with
# offline ImageNet weights (baselines/offline-pretrained.toml; the `lite0` extra, part of `dev`).
SUITES = {"paper": PAPER_SUITE, "quick": PAPER_SUITE + ("lite0-linear", "painseeker-lite0"), "lbp": PAPER_SUITE[:6]}
META_COLUMNS = ("pose_yaw", "pose_pitch", "pose_roll", "pose_bin")  # what a method may see besides pixels


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
    data: str | None = None  # the --data argument, so worker processes can reload the dataset
    include_low_confidence: bool = False


@dataclass(frozen=True)
class MethodResult:
    method: str
    status: str  # complete | failed
    run_id: str
    predictions: Path | None
    score: dict | None
    seconds: float
    error: str = ""


def config_hash(spec: MethodSpec, config) -> str:
    payload = json.dumps({"family": spec.family, **config_params(config)}, sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()[:12]


def safe_name(name: str) -> str:
    return name.replace("/", "_").replace(os.sep, "_")


# ---------------------------------------------------------------- one fold


def split(dataset: Dataset, images, keys, fold: Fold) -> tuple[TrainSet, TestSet]:
    t = dataset.table
    meta_cols = [c for c in META_COLUMNS if c in t.columns]
    meta = t[meta_cols] if meta_cols else None
    tr, te = fold.train, fold.test
    train = TrainSet(np.asarray(images[tr]), t["label"].to_numpy()[tr], t["subject"].to_numpy()[tr],
                     tuple(keys[i] for i in tr), None if meta is None else meta.iloc[tr].reset_index(drop=True))
    test = TestSet(np.asarray(images[te]), t["subject"].to_numpy()[te], tuple(keys[i] for i in te),
                   None if meta is None else meta.iloc[te].reset_index(drop=True))
    return train, test


def run_fold(spec: MethodSpec, config, dataset: Dataset, images, keys, fold: Fold, job_dir: Path, ctx: Context) -> dict:
    """Fit on the training rats, predict the held-out rat, write the job folder; returns its summary."""
    train, test = split(dataset, images, keys, fold)
    work = job_dir / "artifacts"
    work.mkdir(parents=True, exist_ok=True)
    ctx.work_dir = work
    method = spec.load()(config, ctx)
    start = time.perf_counter()
    method.fit(train)
    train_seconds = time.perf_counter() - start
    pred = method.predict(test)
    if len(pred.labels) != len(test):
        raise ValueError(f"{spec.name}: predict returned {len(pred.labels)} labels for {len(test)} test images")
    t = dataset.table.iloc[fold.test]
    frame = pd.DataFrame({"image": t["image"].to_numpy(), "subject": t["subject"].to_numpy(), "y_true": t["label"].to_numpy(),
                          "y_pred": pred.labels, "score": np.round(pred.scores, 6), "fold": fold.subject})
    extra = {}
    if pred.attention is not None:
        from .attention import load_au_regions, localisation

        regions = load_au_regions(dataset)
        if regions:
            k = int(getattr(config, "k_high", 5))
            crop = getattr(config, "crop_size", None)
            size = image_size(config)
            shown = crop / size if crop and getattr(config, "test_crop", "center") == "center" else 1.0  # resize: whole face
            with_image = t["image"].tolist()
            first = dataset.table["file"].iloc[fold.test[0]]
            from PIL import Image

            with Image.open(first) as im:
                wh = im.size
            extra.update(localisation(pred.attention, with_image, regions, wh, k, shown))
    summary = {"subject": fold.subject, "train_seconds": train_seconds, "predict_seconds": time.perf_counter() - start - train_seconds,
               "n_test": len(test), **extra}
    tmp = job_dir / f".predictions.{os.getpid()}.tmp"
    frame.to_csv(tmp, index=False)
    os.replace(tmp, job_dir / "predictions.csv")
    atomic_write_text(job_dir / "fold.json", json.dumps(summary))
    atomic_write_text(job_dir / "DONE", "")
    return summary


def method_config(spec, opts: RunOptions):
    """The method's config under the run's profile, `where_declared` settings it has, and `--set` overrides."""
    declared = {public_name(f) for f in dataclasses.fields(spec.load().Config)}
    extra = {k: v for k, v in opts.where_declared.items() if k in declared}
    return spec.config(opts.profile, **{**extra, **opts.overrides})


def _worker(args) -> dict:
    """A fold in a worker process: reload the (cached) dataset and images, then run the fold."""
    name, opts, fold, job_dir, threads = args
    import torch  # noqa: F401  (workers of deep methods: keep the cores split between processes)

    torch.set_num_threads(threads)
    dataset = load_dataset(opts.data, opts.include_low_confidence)
    spec = get_method(name)
    config = method_config(spec, opts)
    images, keys = load_images(dataset, image_size(config))
    ctx = Context(seed=opts.seed, device=opts.device, profile=opts.profile, cache_dir=cache_dir())
    return run_fold(spec, config, dataset, images, keys, fold, Path(job_dir), ctx)


# ---------------------------------------------------------------- one method


class Progress:
    """A tqdm bar over folds on a terminal; plain log lines with --quiet or when not a terminal."""

    def __init__(self, method: str, total: int, quiet: bool):
        self.method, self.quiet = method, quiet or not sys.stderr.isatty()
        self.bar = None
        if not self.quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=method, unit="fold", leave=True, dynamic_ncols=True)

    def fold(self, subject: str, **kw) -> None:
        if self.bar is not None:
            self.bar.set_postfix(fold=subject, **kw)

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


def run_method(name: str, dataset: Dataset, opts: RunOptions, client=None) -> MethodResult:
    dataset.require_images()
    spec = get_method(name)
    config = method_config(spec, opts)
    chash = config_hash(spec, config)
    images, keys = load_images(dataset, image_size(config))
    fingerprint = hashlib.sha1((dataset.fingerprint() + "|".join(keys)).encode()).hexdigest()[:16]
    folds = leave_one_subject_out(dataset.table["subject"], dataset.table["image"])
    root = Path(opts.runs_dir) / "jobs" / f"{safe_name(dataset.name)}-{fingerprint}" / safe_name(name) / f"{chash}-seed{opts.seed}"
    c = client or tracking.client(opts.runs_dir, opts.tracking_uri)
    exp = tracking.experiment_id(c, dataset.name, opts.runs_dir)
    key = {"method": name, "dataset_fingerprint": fingerprint, "seed": opts.seed, "config_hash": chash, "role": "parent"}
    existing = tracking.find_runs(c, exp, **key)
    done_parent = next((r for r in existing if r.data.tags.get("ratspain.status") == "complete"), None)
    pred_path = Path(opts.runs_dir) / "predictions" / safe_name(dataset.name) / f"{safe_name(name)}__seed{opts.seed}.csv"
    if done_parent is not None and pred_path.is_file():
        if not opts.quiet:
            print(f"[{name}] already complete (MLflow run {done_parent.info.run_id}): skipped", file=sys.stderr)
        score = metrics.score(*_columns(pd.read_csv(pred_path, dtype={"subject": str, "image": str})))
        return MethodResult(name, "complete", done_parent.info.run_id, pred_path, score, 0.0)
    parent = existing[0] if existing else None
    if parent is None:
        params = {"method": name, "family": spec.family, "seed": opts.seed, "profile": opts.profile, "protocol": "loro",
                  "dataset": dataset.name, "dataset_fingerprint": fingerprint, "git_commit": tracking.git_commit(),
                  **tracking.versions(), **{f"cfg.{k}": v for k, v in config_params(config).items()}}
        parent = c.create_run(exp, run_name=f"{name} seed {opts.seed}", tags={
            **{f"ratspain.{k}": str(v) for k, v in key.items()}, "ratspain.dataset": dataset.name, "ratspain.profile": opts.profile,
            "ratspain.source": spec.source, "ratspain.status": "running", "ratspain.folds_expected": str(len(folds)),
            "ratspain.cite": spec.cite[:5000]})
        tracking.log(c, parent.info.run_id, params=params)
    parent_id = parent.info.run_id
    tracking.log(c, parent_id, tags={"ratspain.status": "running"})
    children = {r.data.tags.get("ratspain.subject"): r for r in tracking.find_runs(c, exp, role="fold")
                if r.data.tags.get("mlflow.parentRunId") == parent_id}
    progress = Progress(name, len(folds), opts.quiet)
    start = time.perf_counter()
    error = ""
    try:
        todo = [f for f in folds if not (root / f.subject / "DONE").is_file()]
        for f in folds:
            if f not in todo:
                progress.done(f.subject, "done earlier (resumed)")
                _log_child(c, exp, parent_id, children, f, root / f.subject, name)
        if opts.jobs > 1 and len(todo) > 1:
            threads = max(1, (os.cpu_count() or 1) // opts.jobs)
            import multiprocessing as mp

            with ProcessPoolExecutor(opts.jobs, mp_context=mp.get_context("spawn")) as pool:
                futures = {pool.submit(_worker, (name, opts, f, str(root / f.subject), threads)): f for f in todo}
                for fut in as_completed(futures):
                    f = futures[fut]
                    fut.result()
                    _log_child(c, exp, parent_id, children, f, root / f.subject, name)
                    progress.done(f.subject, "done")
        else:
            for f in todo:
                progress.fold(f.subject)
                ctx = Context(seed=opts.seed, device=opts.device, profile=opts.profile, cache_dir=cache_dir(),
                              progress=progress.epoch(f.subject))
                s = run_fold(spec, config, dataset, images, keys, f, root / f.subject, ctx)
                _log_child(c, exp, parent_id, children, f, root / f.subject, name)
                progress.done(f.subject, f"fit {s['train_seconds']:.1f}s")
    except Exception as e:  # a failing method is recorded and reported, the others still run
        error = f"{type(e).__name__}: {e}"
        tracking.log(c, parent_id, tags={"ratspain.status": "failed", "ratspain.error": error[:5000]})
        c.set_terminated(parent_id, "FAILED")
        if not opts.quiet:
            traceback.print_exc()
        return MethodResult(name, "failed", parent_id, None, None, time.perf_counter() - start, error)
    finally:
        progress.close()
    frames = [pd.read_csv(root / f.subject / "predictions.csv", dtype={"subject": str, "image": str, "fold": str}) for f in folds]
    preds = pd.concat(frames, ignore_index=True).assign(method=name, seed=opts.seed)
    pred_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pred_path.with_name(f".{pred_path.name}.{os.getpid()}.tmp")
    preds.to_csv(tmp, index=False)
    os.replace(tmp, pred_path)
    score = metrics.score(*_columns(preds))
    _log_parent(c, parent_id, dataset, preds, score, folds, root, pred_path, opts)
    return MethodResult(name, "complete", parent_id, pred_path, score, time.perf_counter() - start)


def _columns(preds: pd.DataFrame):
    return preds["y_true"].to_numpy(), preds["y_pred"].to_numpy(), preds["subject"].astype(str).to_numpy()


def _log_child(c, exp, parent_id, children, fold: Fold, job_dir: Path, name: str) -> None:
    """Log a finished fold as a child run (once; a stale child from a killed run is replaced)."""
    old = children.get(fold.subject)
    if old is not None and old.data.tags.get("ratspain.status") == "complete":
        return
    if old is not None:
        tracking.log(c, old.info.run_id, tags={"ratspain.status": "abandoned"})
        c.set_terminated(old.info.run_id, "KILLED")
    summary = json.loads((job_dir / "fold.json").read_text())
    frame = pd.read_csv(job_dir / "predictions.csv")
    cm = metrics.confusion(frame["y_true"], frame["y_pred"])
    run = c.create_run(exp, run_name=f"{name} fold {fold.subject}", tags={
        "mlflow.parentRunId": parent_id, "ratspain.role": "fold", "ratspain.subject": fold.subject, "ratspain.status": "running"})
    m = {k: v for k, v in metrics.summary(cm).items()}
    m.update({k: v for k, v in summary.items() if isinstance(v, (int, float)) and k != "subject"})
    tracking.log(c, run.info.run_id, metrics=m)
    c.log_artifact(run.info.run_id, str(job_dir / "predictions.csv"))
    art = job_dir / "artifacts"
    if art.is_dir() and any(art.iterdir()):
        c.log_artifacts(run.info.run_id, str(art), "figures")
    tracking.log(c, run.info.run_id, tags={"ratspain.status": "complete"})
    c.set_terminated(run.info.run_id, "FINISHED")
    children[fold.subject] = c.get_run(run.info.run_id)


def _log_parent(c, parent_id, dataset, preds, score, folds, root: Path, pred_path: Path, opts: RunOptions) -> None:
    from .plots import confusion_png

    summaries = [json.loads((root / f.subject / "fold.json").read_text()) for f in folds]
    p = score["pooled"]
    m = {f"pooled_{k}": v for k, v in p.items() if k in ("f1", "accuracy", "balanced_accuracy", "mcc")}
    m.update({"mean_f1": score["mean_over_subjects"]["f1"], "mean_accuracy": score["mean_over_subjects"]["accuracy"],
              "train_seconds": sum(s["train_seconds"] for s in summaries), "folds_complete": len(folds)})
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
    rows = [{"subject": s, **{k: v for k, v in d.items()}} for s, d in score["per_subject"].items()]
    pd.DataFrame(rows).to_csv(out / "per_subject.csv", index=False)
    confusion_png(out / "confusion_matrix.png", p["tp"], p["fp"], p["fn"], p["tn"], f"{preds['method'].iloc[0]} (pooled over folds)")
    (out / "predictions.csv").write_bytes(pred_path.read_bytes())
    for f in ("predictions.csv", "score.json", "per_subject.csv", "confusion_matrix.png"):
        c.log_artifact(parent_id, str(out / f))
    tracking.log(c, parent_id, metrics=m, tags={"ratspain.status": "complete", "ratspain.hardware": tracking.hardware(_device_used(opts.device))})
    c.set_terminated(parent_id, "FINISHED")


def _device_used(device: str) -> str:
    if device != "auto":
        return device
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def run_methods(names: list[str], dataset: Dataset, opts: RunOptions) -> list[MethodResult]:
    c = tracking.client(opts.runs_dir, opts.tracking_uri)
    return [run_method(n, dataset, opts, c) for n in names]
