"""What every protocol shares: the fold, the base class, and the checks that refuse a protocol a dataset cannot hold."""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..data.dataset import sort_subjects
from ..errors import InputError

#: leave-one-rat-out's version: bumped whenever what a fold hands a method, or how it is scored, changes; part of
#: every result's code hash (another protocol's name and version are part of its results' paths: `Protocol.key`)
PROTOCOL_VERSION = "loro-1"


@dataclass(frozen=True)
class Fold:
    """One fold: `subject` names what is held out (a rat under LORO, a site under leave-one-site-out); indices are
    rows of the dataset table."""

    subject: str
    train_idx: tuple[int, ...]
    test_idx: tuple[int, ...]

    @property
    def train(self) -> np.ndarray:
        return np.asarray(self.train_idx, dtype=np.int64)

    @property
    def test(self) -> np.ndarray:
        return np.asarray(self.test_idx, dtype=np.int64)


def leave_one_group_out(groups, images=None, what: str = "subject") -> tuple[Fold, ...]:
    """One fold per value of `groups`: that value's images are the test set, every other value's the training set.
    Asserts that no fold shares a value, or an image id when `images` is given, between train and test."""
    groups = np.asarray([str(s) for s in groups])
    folds = []
    for s in sort_subjects(set(groups)):
        test = np.flatnonzero(groups == s)
        train = np.flatnonzero(groups != s)
        assert not set(groups[train]) & set(groups[test]), f"fold {s}: a {what} is in train and test"
        if images is not None:
            images = np.asarray(images)
            assert not set(images[train]) & set(images[test]), f"fold {s}: an image is in train and test"
        folds.append(Fold(s, tuple(train.tolist()), tuple(test.tolist())))
    return tuple(folds)


def leave_one_subject_out(subjects, images=None) -> tuple[Fold, ...]:
    """One fold per subject (the paper's protocol, "Experimental protocol": S folds for S rats)."""
    return leave_one_group_out(subjects, images)


def fold_digest(fold: Fold) -> str:
    """A short digest of a fold's row indices (two folds holding out the same subject may differ)."""
    text = ",".join(map(str, fold.train_idx)) + "|" + ",".join(map(str, fold.test_idx))
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def counts_text(values) -> str:
    """'A: 570, B: 568': the count of each value, in natural order."""
    vals, n = np.unique(np.asarray([str(v) for v in values]), return_counts=True)
    order = {v: i for i, v in enumerate(sort_subjects(vals))}
    return ", ".join(f"{v}: {c}" for v, c in sorted(zip(vals, n), key=lambda t: order[t[0]]))


def require_column(protocol: str, table, column: str, values: int = 2) -> None:
    """InputError unless `column` is in the manifest with at least `values` distinct values."""
    if column not in table.columns:
        raise InputError(f"protocol {protocol}: the manifest has no column {column!r} "
                         f"(columns: {', '.join(c for c in table.columns if not c.startswith(('rater_', 'au_')))})")
    present = table[column].dropna().astype(str)
    present = present[present != ""]
    if present.nunique() < values:
        raise InputError(f"protocol {protocol}: column {column!r} has {present.nunique()} value"
                         f"{'' if present.nunique() == 1 else 's'} ({counts_text(present) or 'none'}); it needs {values} or more")


class Protocol(ABC):
    """A way to cut a dataset into folds. A subclass sets `name` (and `version`, `question`) and writes `folds`;
    `arg` is what follows the name after a colon (`leave-one-group-out:site`)."""

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    question: ClassVar[str] = ""  # what it answers, in one line (`ratspain-bench protocols`)
    takes: ClassVar[str] = ""  # what `arg` is ("" when it takes none)
    usage: ClassVar[str] = ""  # how `--protocol` names it, argument included (default: `name`)

    @property
    def columns(self) -> tuple[str, ...]:
        """Manifest columns its predictions file carries beside the contract's (what its board breaks the score down by)."""
        return ()

    def __init__(self, arg: str = ""):
        self.arg = arg

    def __repr__(self) -> str:
        return f"<protocol {self.id}>"

    @property
    def id(self) -> str:
        """The protocol as named: `loro`, `pose-shift`, `leave-one-group-out:site`."""
        return self.name + (f":{self.arg}" if self.arg else "")

    @property
    def key(self) -> str:
        """The part of a result's identity (job folders, predictions file, MLflow tag) that names the protocol."""
        return f"{self.id}-v{self.version}"

    @abstractmethod
    def folds(self, table) -> tuple[Fold, ...]:
        """The folds of `table` (rows of the dataset table), before `plan`'s checks."""

    def plan(self, table, images=None) -> tuple[Fold, ...]:
        """The folds of `table`, refused (InputError, one line) where a fold would train on one class only."""
        folds = self.folds(table)
        labels = table["label"].to_numpy() if "label" in table.columns else None
        for f in folds:
            if len(f.test_idx) == 0:
                raise InputError(f"protocol {self.id}: fold {f.subject} has no test image")
            train = labels[f.train] if labels is not None else np.array([0, 1])  # (a table without labels: nothing to check)
            if len(set(train.tolist())) < 2:
                raise InputError(f"protocol {self.id}: fold {f.subject} trains on one class only "
                                 f"(label in its training set: {counts_text(train) or 'no image'}); every fold needs both")
        if images is not None:
            images = np.asarray(images)
            for f in folds:
                assert not set(images[f.train]) & set(images[f.test]), f"fold {f.subject}: an image is in train and test"
        return folds

    def inner(self, table, outer: Fold) -> tuple[Fold, ...]:
        """The protocol over `outer`'s training rows only, as folds of the whole table: nested tuning's inner loop.
        Asserts that no outer test row is in an inner fold."""
        rows = outer.train
        inner = self.plan(table.iloc[rows].reset_index(drop=True))
        out = tuple(Fold(f.subject, tuple(int(rows[i]) for i in f.train_idx), tuple(int(rows[i]) for i in f.test_idx)) for f in inner)
        held_out = set(outer.test_idx)
        for f in out:
            assert not held_out & (set(f.train_idx) | set(f.test_idx)), f"inner fold {f.subject} of outer fold {outer.subject} holds an outer test image"
        return out
