"""LORO evaluation for studies, on the fold path of `run` (`evaluation.fold`) and its job folders.

Each (method config, code, seed, fold) is computed once: a grid point, a tuning trial, an outer fold,
a killed study started again or a `run` of the same config all read the same `DONE` job folder. A fold
is named by its held-out subject and a digest of its rows, so an inner fold of nested LORO never shares
a folder with a LORO fold. The harness keeps the labels: `y_true` is filled in by the fold path.

Configs registered with `fit_together` (a sensitivity grid whose points the method fits as one, see
`Method.fits_together`) are fitted together fold by fold, and their job folders are named by the group
too: a joint fit's float rounding is its own, so a group's folders are never those of a lone config.
The first process to claim a fold of the group fits it; another skips to the next fold and waits only
for the folds it needs that are still claimed (a claim left by a dead process is taken over).
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from ..data.cache import load_images
from ..evaluation.fold import FoldTask, image_size, read_fold, run_fold, run_folds
from ..evaluation.identity import JobKey, code_hash, config_hash
from ..evaluation.sandbox import SandboxSettings
from ..methods.base import make_config
from ..methods.registry import MethodSpec
from ..protocols import Fold, get_protocol
from .workers import gone_here, worker_id

STALE_CLAIM_SECONDS = 3600  # a claim of another host older than this is taken over (one of this host: when its process is gone)


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
                 observer: Callable[[FoldSeen], None] | None = None, sandbox: SandboxSettings = SandboxSettings(),
                 protocol: str = "loro"):
        dataset.require_images()
        self.dataset, self.runs_dir, self.seed, self.device, self.profile = dataset, runs_dir, seed, device, profile
        self.observer, self.sandbox = observer, sandbox
        self.fingerprint = dataset.fingerprint
        self.protocol = get_protocol(protocol)
        self.folds = self.protocol.plan(dataset.table, dataset.table["image"])
        self._images: dict[int, tuple] = {}
        self._code: dict[str, str] = {}
        self._together: dict[tuple[str, str], tuple[str, list[dict]]] = {}  # (method, config hash) -> (group digest, configs)

    def images(self, size: int):
        if size not in self._images:
            self._images[size] = load_images(self.dataset, size)
        return self._images[size][0]

    def fit_together(self, spec: MethodSpec, configs: list[dict]) -> bool:
        """Fit these configs of a trusted `spec` together on each fold, if its method `fits_together` them."""
        unique = {config_hash(spec.family, p): p for p in configs}
        if not spec.trusted or len(unique) < 2:
            return False
        cls = spec.load()
        if not cls.fits_together([make_config(cls.Config, None, **p) for p in unique.values()], "binary"):
            return False
        digest = hashlib.sha1(",".join(sorted(unique)).encode()).hexdigest()[:12]
        for h in unique:
            self._together[(spec.name, h)] = (digest, list(unique.values()))
        return True

    def _group(self, spec: MethodSpec, params: dict) -> tuple[str, list[dict]] | None:
        return self._together.get((spec.name, config_hash(spec.family, params)))

    def key(self, spec: MethodSpec, params: dict) -> JobKey:
        if spec.name not in self._code:
            self._code[spec.name] = code_hash(spec)
        group = self._group(spec, params)
        named = {**params, "fitted_together": group[0]} if group else params
        return JobKey(self.dataset.name, self.fingerprint, spec.name, config_hash(spec.family, named), self._code[spec.name], self.seed,
                      protocol=self.protocol.key)

    def fold_predictions(self, spec: MethodSpec, params: dict, fold: Fold, stage: str = "loro", outer: str | None = None,
                         prefetch: bool = False) -> pd.DataFrame:
        """Predictions of one fold (columns image, subject, y_true, y_pred, score, fold), computed once."""
        fresh = self._fit_group(spec, params, [fold]) if self._group(spec, params) else set()
        return self._read(spec, params, fold, stage, outer, prefetch, fold.subject in fresh)

    def _read(self, spec, params, fold, stage, outer, prefetch, fresh=False) -> pd.DataFrame:
        job = self.key(spec, params).fold_dir(self.runs_dir, fold)
        done = read_fold(job)
        if self.observer is not None:
            subj = self.dataset.table["subject"].to_numpy()
            self.observer(FoldSeen(stage, outer, fold, frozenset(subj[fold.train]), frozenset(subj[fold.test]),
                                   done is not None and not fresh))
        if done is None:
            task = FoldTask(spec, params, fold, job, self.seed, self.profile, self.device, self.sandbox, prefetch)
            run_fold(task, self.dataset, self.images(image_size(params)))
            done = read_fold(job)
        return done[0]

    def _fit_group(self, spec: MethodSpec, params: dict, folds) -> set[str]:
        """Every fold of `folds` done for the whole group of `params` (claimed and fitted here, or waited for); returns
        the subjects of the folds that were not done on entry."""
        _, members = self._group(spec, params)
        pending, fresh = list(folds), set()
        while pending:
            busy = []
            for fold in pending:
                jobs = [(p, self.key(spec, p).fold_dir(self.runs_dir, fold)) for p in members]
                if all((j / "DONE").is_file() for _, j in jobs):
                    continue
                fresh.add(fold.subject)
                lock = jobs[0][1].parent / f"{jobs[0][1].name}.claim"
                if not _claim(lock):
                    busy.append(fold)
                    continue
                try:
                    todo = [FoldTask(spec, p, fold, j, self.seed, self.profile, self.device, self.sandbox)
                            for p, j in jobs if not (j / "DONE").is_file()]
                    if todo:
                        run_folds(todo, self.dataset, self.images(image_size(params)))
                finally:
                    lock.unlink(missing_ok=True)
            if busy:
                time.sleep(0.2)
            pending = busy
        return fresh

    def run(self, spec: MethodSpec, params: dict, folds=None, stage: str = "loro", outer: str | None = None,
            on_fold: Callable[[int, pd.DataFrame], None] | None = None) -> pd.DataFrame:
        """Predictions of every fold (default: LORO over all subjects); `on_fold(i, frames so far)` after each."""
        frames = []
        folds = self.folds if folds is None else folds
        fresh = self._fit_group(spec, params, folds) if self._group(spec, params) else set()
        for i, f in enumerate(folds):
            frames.append(self._read(spec, params, f, stage, outer, i < len(folds) - 1, f.subject in fresh))
            if on_fold is not None:
                on_fold(i, pd.concat(frames, ignore_index=True))
        return pd.concat(frames, ignore_index=True)


def _claim(path: Path) -> bool:
    """Take the claim file `path` for this process (its `worker_id`, linked into place whole); False while another live
    process holds it. A claim of a dead process of this host, or one older than STALE_CLAIM_SECONDS, is taken over."""
    me = worker_id()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{me.replace(':', '.')}.tmp")
    tmp.write_text(me)
    try:
        for _ in range(3):
            try:
                os.link(tmp, path)
                return True
            except FileExistsError:
                pass
            try:
                owner = path.read_text()
                age = time.time() - path.stat().st_mtime
            except OSError:
                continue  # released meanwhile
            if gone_here(owner) or age > STALE_CLAIM_SECONDS:
                path.unlink(missing_ok=True)
                continue
            return False
        return False
    finally:
        tmp.unlink(missing_ok=True)
