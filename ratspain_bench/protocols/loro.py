"""`loro`: leave-one-rat-out, the paper's protocol and the default."""
from __future__ import annotations

from .base import Protocol, leave_one_subject_out, require_column


class Loro(Protocol):
    """One fold per rat: trained on every other rat, tested on it ("Experimental protocol": S folds for S rats). Its
    results keep the paths and identities they had before protocols could be chosen (`key` is empty)."""

    name = "loro"
    question = "how well does a method score a rat it has never seen? (the paper's Table 3)"

    @property
    def key(self) -> str:
        return ""

    def folds(self, table):
        require_column(self.id, table, "subject")
        return leave_one_subject_out(table["subject"], table["image"])
