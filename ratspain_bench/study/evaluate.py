"""LORO evaluation for studies, on the fold path of `run` (`evaluation.fold`) and its job folders.

Each (method config, code, seed, fold) is computed once: a grid point, a tuning trial, an outer fold,
a killed study started again or a `run` of the same config all read the same `DONE` job folder. A fold
is named by its held-out subject and a digest of its rows, so an inner fold of nested LORO never shares
a folder with a LORO fold. The harness keeps the labels: `y_true` is filled in by the fold path.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd

from ..data.cache import load_images
from ..evaluation.fold import FoldTask, image_size, read_fold, run_fold
from ..evaluation.identity import JobKey, code_hash, config_hash
from ..evaluation.sandbox import SandboxSettings
from ..methods.registry import MethodSpec
from ..protocol import Fold, leave_one_subject_out


@dataclass(frozen=True)
class FoldSeen:
    """What one fold handed to a method: for tests and audits (`Evaluator(observer=...)`)."""

    stage: str  # loro | inner | outer
    outer: str | None  # the outer held-out subject (nested LORO), else None
    fold: Fold
    train_subjects: frozenset
    test_subjects: frozenset
    cached: bool


class Evaluator:
    def __init__(self, dataset, runs_dir, seed: int = 0, device: str = "auto", profile: str = "quick",
                 observer: Callable[[FoldSeen], None] | None = None, sandbox: SandboxSettings = SandboxSettings()):
        dataset.require_images()
        self.dataset, self.runs_dir, self.seed, self.device, self.profile = dataset, runs_dir, seed, device, profile
        self.observer, self.sandbox = observer, sandbox
        self.fingerprint = dataset.fingerprint
        self.folds = leave_one_subject_out(dataset.table["subject"], dataset.table["image"])
        self._images: dict[int, tuple] = {}
        self._code: dict[str, str] = {}

    def images(self, size: int):
        if size not in self._images:
            self._images[size] = load_images(self.dataset, size)
        return self._images[size][0]

    def key(self, spec: MethodSpec, params: dict) -> JobKey:
        if spec.name not in self._code:
            self._code[spec.name] = code_hash(spec)
        return JobKey(self.dataset.name, self.fingerprint, spec.name, config_hash(spec.family, params), self._code[spec.name], self.seed)

    def fold_predictions(self, spec: MethodSpec, params: dict, fold: Fold, stage: str = "loro", outer: str | None = None,
                         prefetch: bool = False) -> pd.DataFrame:
        """Predictions of one fold (columns image, subject, y_true, y_pred, score, fold), computed once."""
        job = self.key(spec, params).fold_dir(self.runs_dir, fold)
        done = read_fold(job)
        if self.observer is not None:
            subj = self.dataset.table["subject"].to_numpy()
            self.observer(FoldSeen(stage, outer, fold, frozenset(subj[fold.train]), frozenset(subj[fold.test]), done is not None))
        if done is None:
            task = FoldTask(spec, params, fold, job, self.seed, self.profile, self.device, self.sandbox, prefetch)
            run_fold(task, self.dataset, self.images(image_size(params)))
            done = read_fold(job)
        return done[0]

    def run(self, spec: MethodSpec, params: dict, folds=None, stage: str = "loro", outer: str | None = None,
            on_fold: Callable[[int, pd.DataFrame], None] | None = None) -> pd.DataFrame:
        """Predictions of every fold (default: LORO over all subjects); `on_fold(i, frames so far)` after each."""
        frames = []
        folds = self.folds if folds is None else folds
        for i, f in enumerate(folds):
            frames.append(self.fold_predictions(spec, params, f, stage, outer, prefetch=i < len(folds) - 1))
            if on_fold is not None:
                on_fold(i, pd.concat(frames, ignore_index=True))
        return pd.concat(frames, ignore_index=True)
