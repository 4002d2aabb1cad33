"""The evaluation protocol: leave-one-subject-out (the paper's leave-one-rat-out, LORO)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .data.dataset import sort_subjects

#: bumped whenever what a fold hands a method, or how it is scored, changes: part of every result's identity
PROTOCOL_VERSION = "loro-1"


@dataclass(frozen=True)
class Fold:
    """One LORO fold: `subject` is held out; indices are rows of the dataset table."""

    subject: str
    train_idx: tuple[int, ...]
    test_idx: tuple[int, ...]

    @property
    def train(self) -> np.ndarray:
        return np.asarray(self.train_idx, dtype=np.int64)

    @property
    def test(self) -> np.ndarray:
        return np.asarray(self.test_idx, dtype=np.int64)


def leave_one_subject_out(subjects, images=None) -> tuple[Fold, ...]:
    """One fold per subject: that subject's images are the test set, every other subject's the training set.

    The paper's protocol ("Experimental protocol": S folds for S rats). Asserts that no fold shares a
    subject, or an image id when `images` is given, between train and test.
    """
    subjects = np.asarray([str(s) for s in subjects])
    folds = []
    for s in sort_subjects(set(subjects)):
        test = np.flatnonzero(subjects == s)
        train = np.flatnonzero(subjects != s)
        assert not set(subjects[train]) & set(subjects[test]), f"fold {s}: a subject is in train and test"
        if images is not None:
            images = np.asarray(images)
            assert not set(images[train]) & set(images[test]), f"fold {s}: an image is in train and test"
        folds.append(Fold(s, tuple(train.tolist()), tuple(test.tolist())))
    return tuple(folds)


def fold_digest(fold: Fold) -> str:
    """A short digest of a fold's row indices (two folds holding out the same subject may differ)."""
    text = ",".join(map(str, fold.train_idx)) + "|" + ",".join(map(str, fold.test_idx))
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def inner_folds(subjects, outer: Fold, images=None) -> tuple[Fold, ...]:
    """LORO over the training subjects of `outer` only, as folds of the whole table (global row indices):
    nested LORO's inner loop. Asserts that the outer test subject is in no inner fold."""
    subjects = np.asarray([str(s) for s in subjects])
    rows = outer.train
    inner = leave_one_subject_out(subjects[rows], None if images is None else np.asarray(images)[rows])
    out = tuple(Fold(f.subject, tuple(int(rows[i]) for i in f.train_idx), tuple(int(rows[i]) for i in f.test_idx)) for f in inner)
    held_out = set(subjects[outer.test])
    for f in out:
        assert not set(subjects[list(f.train_idx) + list(f.test_idx)]) & held_out, \
            f"inner fold {f.subject} of outer fold {outer.subject} contains the outer test subject"
    return out
