"""`pose-shift`: leave-one-rat-out, trained on the other rats' frontal faces only, scored on every pose of the held-out rat."""
from __future__ import annotations

from ..errors import InputError
from .base import Fold, Protocol, leave_one_subject_out, require_column

BINS = ("frontal", "moderate", "extreme")  # the replica's and `frames`' pose bins (|yaw| < 15, < 40, else; degrees)


class PoseShift(Protocol):
    """The paper's claim ("head pose-invariant") as a test: each fold trains on the other rats' faces of the bins in
    `arg` (default `frontal`; `pose-shift:frontal+moderate` for two) and tests on every image of the held-out rat.
    The headline is the drop of pooled F1 from frontal to extreme test faces, with intervals over rats (the
    robustness board). Needs a `pose_bin` column (the replica has one; `frames --faces dlc:` writes one)."""

    name = "pose-shift"
    question = "trained on faces seen from the front, how well does a method score faces seen from the side?"
    takes = "the pose bins to train on, joined by + (default frontal)"
    usage = "pose-shift[:BINS]"

    @property
    def bins(self) -> tuple[str, ...]:
        bins = tuple(b for b in (self.arg or "frontal").split("+") if b)
        unknown = [b for b in bins if b not in BINS]
        if unknown or not bins:
            raise InputError(f"protocol {self.id}: unknown pose bin {', '.join(unknown) or '(none)'}; bins: {', '.join(BINS)}")
        return bins

    @property
    def columns(self) -> tuple[str, ...]:
        return ("pose_bin",)

    def folds(self, table):
        bins = self.bins
        require_column(self.id, table, "subject")
        require_column(self.id, table, "pose_bin", values=1)
        pose = table["pose_bin"].astype(str).to_numpy()
        kept = set(int(i) for i, b in enumerate(pose) if b in bins)
        out = []
        for f in leave_one_subject_out(table["subject"], table["image"]):
            out.append(Fold(f.subject, tuple(i for i in f.train_idx if i in kept), f.test_idx))
        return tuple(out)
