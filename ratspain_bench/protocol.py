"""The evaluation protocol: leave-one-subject-out (the paper's leave-one-rat-out, LORO)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data.dataset import sort_subjects


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
