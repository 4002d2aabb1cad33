"""`leave-one-group-out:COLUMN`: one fold per value of a manifest column (site, strain, camera, session)."""
from __future__ import annotations

from ..errors import InputError
from .base import Protocol, leave_one_group_out, require_column


class LeaveOneGroupOut(Protocol):
    """Each value of COLUMN is held out in turn: trained on the images of every other value, tested on its own.
    `leave-one-group-out:subject` is `loro`'s folds; `leave-one-group-out:site` is the cross-lab question of
    Andresen et al. (a held-out subset of lab, strain and camera) and Ernst et al. (four sites)."""

    name = "leave-one-group-out"
    question = "how well does a method trained elsewhere score a new site, strain, camera or session?"
    takes = "COLUMN, a manifest column"
    usage = "leave-one-group-out:COLUMN"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.arg,) if self.arg not in ("", "subject") else ()

    def folds(self, table):
        if not self.arg:
            raise InputError("protocol leave-one-group-out needs a column: leave-one-group-out:COLUMN, e.g. leave-one-group-out:site")
        require_column(self.id, table, self.arg)
        return leave_one_group_out(table[self.arg], table["image"], what=self.arg)
