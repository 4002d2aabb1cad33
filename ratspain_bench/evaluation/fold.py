"""The fold path: the one place where a method meets a fold, for `run`, both studies, `submit validate`
and the benchmarks.

`run_fold(task, dataset, images)`: split the dataset (the training rats' images, labels, subject ids;
the test rat's images and subject id, never its labels), fit and predict the test images in a secret
random order (`blind`; predictions are put back in table order), in this process for a trusted method
or in a sandboxed worker process for outside code (`sandbox`), check the predictions
by the rules of a predictions file (`predictions.check_output`), score where the method looked
(attention localisation, when the method returns attention maps and AU boxes are known), and write
the job folder: `predictions.csv` and `fold.json` under temporary names renamed into place, then
`DONE` last. A folder with `DONE` is never computed again (`read_fold`).
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..methods.base import Context, Method, Predictions, TestSet, TrainSet, make_config
from ..methods.registry import MethodSpec
from ..paths import atomic_write_text, cache_dir
from ..protocols import Fold
from ..tasks import AUS, BLANK, au_column, by_au
from . import blind
from .predictions import InvalidOutput, check_output
from .outside import fit_predict
from .sandbox import SandboxError, SandboxSettings

META_COLUMNS = ("pose_yaw", "pose_pitch", "pose_roll", "pose_bin")  # what a method may see besides pixels


class FoldError(Exception):
    """A fold failed (the method raised, overran its limits, or returned invalid predictions: `rule` names
    the predictions rule broken, else it is "")."""

    def __init__(self, message: str, rule: str = "", reason: str = "crashed"):
        super().__init__(message)
        self.rule = rule
        self.reason = reason  # sandbox.REASONS


@dataclass(frozen=True)
class FoldTask:
    """One fold of one configured method. `params`: the full config (public names)."""

    spec: MethodSpec
    params: dict
    fold: Fold
    job_dir: Path
    seed: int = 0
    profile: str = "quick"
    device: str = "auto"
    sandbox: SandboxSettings = SandboxSettings()  # how an outside method runs (trusted ones run in this process)
    prefetch: bool = False  # more folds of this method follow: an outside method's next worker may start now
    task: str = "binary"  # `binary` or `au` (`ratspain_bench.tasks`)


def image_size(params: dict) -> int:
    """Side of the square images a method gets (its `image_size` parameter, default 224)."""
    return int(params.get("image_size", 224))


def check_image_size(name: str, params: dict, n_images: int, memory_mb: int) -> int:
    """An outside method's `image_size`, refused (InputError naming it) when the harness would have to decode more than
    the worker may hold: `n_images` RGB images of that side must fit in its memory limit."""
    size = params.get("image_size", 224)
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise InputError(f"{name}: image_size {size!r}: expected a whole number of pixels, at least 8")
    need = n_images * size * size * 3
    if need > memory_mb << 20:
        raise InputError(f"{name}: image_size {size}: {n_images:,} decoded images of {size}x{size} take {need / 2**30:,.1f} GiB, "
                         f"more than the worker's memory limit of {memory_mb:,} MiB")
    return size


def au_grades(table: pd.DataFrame) -> np.ndarray:
    """(N, 4) consensus AU grades of a dataset table in `AUS` order, `BLANK` where none was accepted."""
    missing = [au_column(a) for a in AUS if au_column(a) not in table.columns]
    if missing:
        raise InputError(f"the au task needs AU grades: the dataset has no column {', '.join(missing)}")
    return np.stack([pd.to_numeric(table[au_column(a)], errors="coerce").fillna(BLANK).to_numpy(int) for a in AUS], axis=1)


def split(dataset, images, fold: Fold, task: str = "binary") -> tuple[TrainSet, TestSet]:
    """The method's view of a fold: labels (in the au task also AU grades) of the training rats only."""
    t = dataset.table
    keys = dataset.keys
    meta_cols = [c for c in META_COLUMNS if c in t.columns]
    meta = t[meta_cols] if meta_cols else None
    tr, te = fold.train, fold.test
    au = by_au(au_grades(t.iloc[tr])) if task == "au" else None
    train = TrainSet(np.asarray(images[tr]), t["label"].to_numpy()[tr], t["subject"].to_numpy()[tr],
                     tuple(keys[i] for i in tr), None if meta is None else meta.iloc[tr].reset_index(drop=True), au)
    test = TestSet(np.asarray(images[te]), t["subject"].to_numpy()[te], tuple(keys[i] for i in te),
                   None if meta is None else meta.iloc[te].reset_index(drop=True))
    return train, test


def build(spec: MethodSpec, params: dict, ctx: Context) -> Method:
    """A fresh instance of the method with exactly `params` (no profile applied: they are complete)."""
    cls = spec.load()
    return cls(make_config(cls.Config, None, **params), ctx)


def _context(task: FoldTask, progress, log_metric) -> Context:
    hooks = {k: v for k, v in (("progress", progress), ("log_metric", log_metric)) if v is not None}
    return Context(seed=task.seed, device=task.device, profile=task.profile, cache_dir=cache_dir(), work_dir=task.job_dir / "artifacts",
                   task=task.task, **hooks)


def _checked(task: FoldTask, pred: Predictions, n_test: int):
    return check_output(pred.labels, pred.scores, n_test, pred.au if task.task == "au" else None, task.task)


@contextlib.contextmanager
def _fold_errors(task: FoldTask):
    """A method's failure as a FoldError naming the method, the fold and the predictions rule broken."""
    try:
        yield
    except InvalidOutput as e:
        raise FoldError(f"{task.spec.name}, fold {task.fold.subject}: invalid predictions: {e}", e.rule, "malformed") from None
    except SandboxError as e:
        rule = "predict_type" if "predict() returned" in str(e) else ""
        raise FoldError(f"{task.spec.name}, fold {task.fold.subject}: {e}", rule, "malformed" if rule else e.reason) from None
    except InputError:
        raise
    except Exception as e:
        raise FoldError(f"{task.spec.name}, fold {task.fold.subject}: {type(e).__name__}: {e}") from e


def _localisation(dataset, method: Method, pred: Predictions, fold: Fold) -> dict:
    """Where the top-k attention regions sit relative to the AU boxes (when both are known); per AU too when the
    method returns an attention map per AU."""
    from ..attention import load_au_regions, localisation, localisation_per_au

    regions = load_au_regions(dataset)
    if not regions:
        return {}
    from PIL import Image

    k, shown = method.attention_view()
    with Image.open(dataset.table["file"].iloc[fold.test[0]]) as im:
        wh = im.size
    images = dataset.table["image"].iloc[list(fold.test)].tolist()
    out = localisation(pred.attention, images, regions, wh, k, shown)
    if pred.au_attention:
        out.update(localisation_per_au(pred.au_attention, images, regions, wh, k, shown))
    return out


def run_fold(task: FoldTask, dataset, images, progress=None, log_metric=None) -> dict:
    """Fit on the training rats, predict the held-out rat, check, write the job folder; returns its summary."""
    return run_folds([task], dataset, images, progress, log_metric)[0]


def run_folds(tasks: list[FoldTask], dataset, images, progress=None, log_metric=None) -> list[dict]:
    """`run_fold` for configs of one method on one fold: a trusted method fits them with `Method.fit_together` (one
    by one unless it `fits_together` them; each fold's `train_seconds` is then the joint fit's time over their number)."""
    lead = tasks[0]
    train, test = split(dataset, images, lead.fold, lead.task)
    test, order = blind.shuffle(test)
    for t in tasks:
        (t.job_dir / "artifacts").mkdir(parents=True, exist_ok=True)
    out = []
    if not lead.spec.trusted:  # each in its own sandboxed worker
        for t in tasks:
            start = time.perf_counter()
            with _fold_errors(t):
                pred, fit_seconds, extra = fit_predict(t, train, test)
                result = _checked(t, blind.restore(pred, order), len(test))
            out.append(_write(t, dataset, result, extra, fit_seconds, time.perf_counter() - start))
        return out
    with _fold_errors(lead):
        start = time.perf_counter()
        methods = [build(t.spec, t.params, _context(t, progress, log_metric)) for t in tasks]
        type(methods[0]).fit_together(methods, train)
        fit_seconds = (time.perf_counter() - start) / len(tasks)
    for t, method in zip(tasks, methods):
        start = time.perf_counter()
        with _fold_errors(t):
            pred = method.predict(test)
            if not isinstance(pred, Predictions):
                raise InvalidOutput(f"predict() returned {type(pred).__name__}, expected ratspain_bench.methods.Predictions", "predict_type")
            pred = blind.restore(pred, order)
            result = _checked(t, pred, len(test))
            extra = _localisation(dataset, method, pred, t.fold) if pred.attention is not None else {}
        out.append(_write(t, dataset, result, extra, fit_seconds, fit_seconds + time.perf_counter() - start))
    return out


def _write(task: FoldTask, dataset, checked, extra: dict, fit_seconds: float, seconds: float) -> dict:
    """The job folder: predictions.csv and fold.json renamed into place, then DONE."""
    t = dataset.table.iloc[list(task.fold.test)]
    frame = pd.DataFrame({"image": t["image"].to_numpy(), "subject": t["subject"].to_numpy(), "y_true": t["label"].to_numpy(),
                          "y_pred": checked.labels, "score": np.round(checked.scores, 6), "fold": task.fold.subject})
    if task.task == "au":
        truth = au_grades(t)
        for j, a in enumerate(AUS):
            frame[f"y_true_{au_column(a)}"] = pd.array(np.where(truth[:, j] == BLANK, None, truth[:, j]), dtype="Int64")
            frame[f"y_pred_{au_column(a)}"] = checked.au[a]
    summary = {"subject": task.fold.subject, "train_seconds": fit_seconds, "predict_seconds": max(0.0, seconds - fit_seconds),
               "n_test": len(t), **extra}
    tmp = task.job_dir / f".predictions.{os.getpid()}.tmp"
    frame.to_csv(tmp, index=False)
    os.replace(tmp, task.job_dir / "predictions.csv")
    atomic_write_text(task.job_dir / "fold.json", json.dumps(summary))
    atomic_write_text(task.job_dir / "DONE", "")
    return summary


def read_fold(job_dir: Path) -> tuple[pd.DataFrame, dict] | None:
    """A finished job folder's predictions and summary; None when it has no `DONE` marker."""
    job_dir = Path(job_dir)
    if not (job_dir / "DONE").is_file():
        return None
    frame = pd.read_csv(job_dir / "predictions.csv", dtype={"image": str, "subject": str, "fold": str})
    return frame, json.loads((job_dir / "fold.json").read_text())
