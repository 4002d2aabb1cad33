"""LORO evaluation for studies: fit on the training rats, predict the held-out rat, fold by fold.

Each (method, config, seed, fold) is computed once: its predictions are written atomically to
`RUNS_DIR/studies/jobs/<dataset>-<fingerprint>/<method>/<config hash>-seed<N>/<fold>/predictions.csv`
and read back when any study (a grid point, a tuning trial, an outer fold, a killed run started again)
asks for the same fold of the same config. A fold is named by its held-out subject and a digest of
its row indices, so an inner fold of nested LORO never shares a folder with a LORO fold.

Study runs never touch the leaderboard's runs: they have their own job folders and MLflow tags.
The harness keeps the labels: a method gets `TrainSet` (labels of the training rats) and `TestSet`
(no labels); the `y_true` column is filled in here, from the dataset table.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .. import metrics
from ..data.cache import content_keys, load_images
from ..methods.base import Context, Predictions, image_size
from ..methods.registry import MethodSpec
from ..paths import cache_dir
from ..protocol import Fold, leave_one_subject_out
from ..runner import config_hash, safe_name, split


@dataclass(frozen=True)
class FoldSeen:
    """What one fold handed to a method: for tests and audits (`Evaluator(observer=...)`)."""

    stage: str  # loro | inner | outer
    outer: str | None  # the outer held-out subject (nested LORO), else None
    fold: Fold
    train_subjects: frozenset
    test_subjects: frozenset
    cached: bool


def fold_digest(fold: Fold) -> str:
    text = ",".join(map(str, fold.train_idx)) + "|" + ",".join(map(str, fold.test_idx))
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def pooled(frame: pd.DataFrame) -> dict:
    """The contract's score object of a predictions frame (pooled = one confusion matrix over folds)."""
    return metrics.score(frame["y_true"].to_numpy(), frame["y_pred"].to_numpy(), frame["subject"].astype(str).to_numpy())


def inner_folds(dataset, outer: Fold) -> tuple[Fold, ...]:
    """LORO over the training rats of `outer` only, as folds of the whole table (global row indices)."""
    rows = outer.train
    subjects = dataset.table["subject"].to_numpy()[rows]
    images = dataset.table["image"].to_numpy()[rows]
    out = []
    for f in leave_one_subject_out(subjects, images):
        out.append(Fold(f.subject, tuple(int(rows[i]) for i in f.train_idx), tuple(int(rows[i]) for i in f.test_idx)))
    held_out = set(dataset.table["subject"].to_numpy()[outer.test])
    for f in out:  # the outer test rat never reaches the inner loop
        seen = set(dataset.table["subject"].to_numpy()[list(f.train_idx) + list(f.test_idx)])
        assert not seen & held_out, f"inner fold {f.subject} of outer fold {outer.subject} contains the outer test rat"
    return tuple(out)


class Evaluator:
    def __init__(self, dataset, runs_dir, seed: int = 0, device: str = "auto", profile: str = "quick",
                 observer: Callable[[FoldSeen], None] | None = None):
        dataset.require_images()
        self.dataset, self.seed, self.device, self.profile, self.observer = dataset, seed, device, profile, observer
        self.keys = content_keys(dataset.table["file"].tolist())
        self.fingerprint = hashlib.sha1((dataset.fingerprint() + "|".join(self.keys)).encode()).hexdigest()[:16]
        self.root = Path(runs_dir) / "studies" / "jobs" / f"{safe_name(dataset.name)}-{self.fingerprint}"
        self._images: dict[int, tuple] = {}
        self.folds = leave_one_subject_out(dataset.table["subject"], dataset.table["image"])

    def images(self, size: int):
        if size not in self._images:
            self._images[size] = load_images(self.dataset, size)
        return self._images[size]

    def job_dir(self, spec: MethodSpec, config, fold: Fold) -> Path:
        return self.root / safe_name(spec.name) / f"{config_hash(spec, config)}-seed{self.seed}" / f"{safe_name(fold.subject)}-{fold_digest(fold)}"

    def fold_predictions(self, spec: MethodSpec, config, fold: Fold, stage: str = "loro", outer: str | None = None) -> pd.DataFrame:
        """Predictions of one fold (columns image, subject, y_true, y_pred, score, fold), computed once."""
        job = self.job_dir(spec, config, fold)
        done = job / "predictions.csv"
        t = self.dataset.table
        if self.observer is not None:
            subj = t["subject"].to_numpy()
            self.observer(FoldSeen(stage, outer, fold, frozenset(subj[fold.train]), frozenset(subj[fold.test]), done.is_file()))
        if done.is_file():
            return pd.read_csv(done, dtype={"image": str, "subject": str, "fold": str})
        images, keys = self.images(image_size(config))
        train, test = split(self.dataset, images, keys, fold)
        ctx = Context(seed=self.seed, device=self.device, profile=self.profile, cache_dir=cache_dir())
        method = spec.load()(config, ctx)
        start = time.perf_counter()
        method.fit(train)
        pred = method.predict(test)
        if not isinstance(pred, Predictions):
            raise TypeError(f"{spec.name}: predict() returned {type(pred).__name__}, expected ratspain_bench.methods.Predictions")
        if len(pred.labels) != len(test):
            raise ValueError(f"{spec.name}: predict returned {len(pred.labels)} labels for {len(test)} test images")
        rows = t.iloc[fold.test]
        frame = pd.DataFrame({"image": rows["image"].to_numpy(), "subject": rows["subject"].to_numpy(),
                              "y_true": rows["label"].to_numpy(), "y_pred": pred.labels, "score": np.round(pred.scores, 6),
                              "fold": fold.subject, "seconds": round(time.perf_counter() - start, 3)})
        job.mkdir(parents=True, exist_ok=True)
        tmp = job / f".predictions.{os.getpid()}.tmp"
        frame.to_csv(tmp, index=False)
        os.replace(tmp, done)
        return frame

    def run(self, spec: MethodSpec, config, folds=None, stage: str = "loro", outer: str | None = None,
            on_fold: Callable[[int, pd.DataFrame], None] | None = None) -> pd.DataFrame:
        """Predictions of every fold (default: LORO over all subjects); `on_fold(i, frames so far)` after each."""
        frames = []
        for i, f in enumerate(self.folds if folds is None else folds):
            frames.append(self.fold_predictions(spec, config, f, stage, outer))
            if on_fold is not None:
                on_fold(i, pd.concat(frames, ignore_index=True))
        return pd.concat(frames, ignore_index=True)
