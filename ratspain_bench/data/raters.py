"""The paper's two-stage AU labelling (section "Explanation of pain levels"), as pure functions.

Stage one: five raters grade each AU of an image 0, 1 or 2, or give no grade ("uncertain", `BLANK`).
An AU on which at least four of the five agree is settled with that grade. Stage two: three more
raters grade every unsettled AU, and it is accepted when at least five of the eight grades agree.
The image level is the rounded (half up) mean of its accepted AUs; an image with fewer than three
accepted AUs is low-confidence (the paper's 157 of 1,295 images, left without a label).

Manifest columns `rater_<id>_au_<name>` (any id): raters are taken in the order their first column
appears, the first five being stage one. The replica numbers its raters 1..8 (1-5 stage one, 6-8 stage
two). Grades are ints with `BLANK` (-1) for none.
"""
from __future__ import annotations

import re

import numpy as np

from ..tasks import AUS, BLANK, GRADES, level_of

RATER_IDS = tuple(range(1, 9))  # the replica's raters
STAGE_ONE = 5  # raters 1-5
STAGE_ONE_AGREE = 4  # of 5: settled in stage one
STAGE_TWO_AGREE = 5  # of 8: accepted in stage two
MIN_ACCEPTED = 3  # accepted AUs an image needs to be high-confidence


def rater_column(rater: int, au: str) -> str:
    """The manifest column of one rater's grade of one AU (`rater_3_au_nose`)."""
    return f"rater_{rater}_au_{au}"


RATER_COLUMNS = tuple(rater_column(r, a) for r in RATER_IDS for a in AUS)  # the replica's, rater by rater
RATER_COLUMN = re.compile(r"^rater_([A-Za-z0-9][A-Za-z0-9._-]*)_au_(" + "|".join(AUS) + r")$")


def rater_columns(columns) -> dict[str, dict[str, str]]:
    """{rater id: {au: column}} of the `rater_<id>_au_<name>` columns, raters in order of first appearance."""
    out: dict[str, dict[str, str]] = {}
    for c in columns:
        m = RATER_COLUMN.match(str(c))
        if m:
            out.setdefault(m.group(1), {})[m.group(2)] = str(c)
    return out


def _top(grades: list[int]) -> tuple[int, int]:
    """The most frequent grade and its count ((BLANK, 0) when all are blank). The thresholds are
    majorities, so a tie never reaches them."""
    n, grade = max((grades.count(g), g) for g in GRADES)
    return (grade, n) if n else (BLANK, 0)


def settled_in_stage_one(grades) -> bool:
    """Whether at least four of the first five raters gave the same grade."""
    return _top([int(g) for g in grades[:STAGE_ONE]])[1] >= STAGE_ONE_AGREE


def consensus(grades) -> int:
    """The accepted grade of one AU from its raters' grades in rater order (first five: stage one), or
    `BLANK` when neither stage agrees. Stage-two grades are ignored when stage one settled the AU."""
    grades = [int(g) for g in grades]
    grade, n = _top(grades[:STAGE_ONE])
    if n >= STAGE_ONE_AGREE:
        return grade
    grade, n = _top(grades)
    return grade if n >= STAGE_TWO_AGREE else BLANK


def accepted_grades(grades) -> list[int]:
    """Per-AU accepted grades of one image from its (AUs, raters) grade array."""
    return [consensus(g) for g in np.asarray(grades, dtype=int)]


def image_level(accepted) -> int:
    """The rounded (half up) mean of the accepted AU grades; `BLANK` when none is accepted."""
    return int(level_of(np.asarray([accepted], dtype=int))[0])


def image_confidence(accepted) -> str:
    """`high` when at least three AUs are accepted, else `low`."""
    return "high" if sum(g != BLANK for g in accepted) >= MIN_ACCEPTED else "low"
