"""The au task's table as cells, shared by README.md and index.html: per-AU QWK, RGS ICC(A,1) with its interval
over rats, RGS MAE and the derived binary "F1/Acc" cell per row, and the human-ceiling reference row."""
from __future__ import annotations

import math

from ..tasks import AUS
from . import au, cells
from .cells import resampling_text
from .table import MARKER, SIGNIFICANCE, Leaderboard, Row

TITLE = " — action units (au task)"
RANKED_BY = "pooled RGS ICC(A,1)"


def value_cell(value: float | None, std: float | None = None, digits: int = 4) -> str:
    if value is None:
        return cells.DASH
    return f"{value:.{digits}f}" + ("" if std is None else f"±{std:.{digits}f}")


def icc_ci_cell(row: Row) -> str:
    lo, hi = row.au["icc_ci"]
    return cells.DASH if lo is None or math.isnan(lo) else f"[{lo:.4f}, {hi:.4f}]"


def headers(lb: Leaderboard) -> list[str]:
    return (["Rank", "Tier", "Method"] + [f"QWK {a}" for a in AUS]
            + ["RGS ICC(A,1)", "ICC 95% CI", "RGS MAE", "Derived F1/Acc (pooled)", "vs top (McNemar)", "Seeds",
               "Train (s)", "Source", "Code"])


def row_cells(row: Row) -> list[str]:
    a = row.au
    return ([cells.rank_cell(row), cells.tier_cell(row), cells.md(row.label)]
            + [value_cell(a["qwk"][k], a["qwk_std"][k]) for k in AUS]
            + [value_cell(a["rgs"]["icc_a1"], a["rgs_std"]["icc_a1"]), icc_ci_cell(row),
               value_cell(a["rgs"]["mae"], a["rgs_std"]["mae"]), cells.pooled_cell(row), cells.vs_top_cell(row),
               cells.seeds_cell(row), cells.train_cell(row), cells.md(row.source) if row.source else cells.DASH, cells.code_cell(row)])


def ceiling_qwk_cell(c: dict, k: str) -> str:
    q, alpha = c["au"][k]["qwk"], c["au"][k]["alpha"]
    return value_cell(q) + ("" if alpha is None else f" (α {alpha:.4f})")


def ceiling_cells(lb: Leaderboard) -> list[str]:
    c = lb.ceiling
    return (["reference", cells.DASH, au.CEILING_LABEL] + [ceiling_qwk_cell(c, k) for k in AUS]
            + [value_cell(c["rgs"]["icc_a1"]), cells.DASH, value_cell(c["rgs"]["mae"])]
            + [cells.DASH] * 6)


def rows(lb: Leaderboard, which=None) -> list[list[str]]:
    """The main rows and then the human-ceiling row (when the board has one), or the rows `which`."""
    if which is not None:
        return [row_cells(r) for r in which]
    return [row_cells(r) for r in lb.main_rows] + ([ceiling_cells(lb)] if lb.ceiling else [])


def tier_text(lb: Leaderboard) -> str:
    return ("**Tier**: paired bootstrap over whole rats of the ICC(A,1) difference against the tier's best row (" + resampling_text(lb)
            + "; on each, both rows' RGS ICC(A,1) is computed from the same rats' images, a rat drawn twice counting twice), "
            f"two-sided p = min(1, 2 min(P(d <= 0), P(d >= 0))), Holm-corrected; walking down the ranks, rows join the tier while "
            f"the adjusted p >= {SIGNIFICANCE}, the first row separated opens the next tier (`tier_p` in `results.csv`).")


def definitions(lb: Leaderboard) -> list[str]:
    return [
        "Each test image's four action units (orbital tightening, nose/cheek flattening, ear changes, whisker changes) "
        "are graded 0/1/2 against the raters' consensus; images with a blank consensus grade are left out of that AU.",
        "**QWK**: quadratic-weighted Cohen's kappa of the predicted grade against the consensus, pooled over all folds.",
        "**RGS ICC(A,1)**: the image's RGS score (mean of its predicted AUs) against the consensus score (mean of the "
        "accepted AUs), two-way random effects, absolute agreement, single measure (McGraw & Wong; Shrout & Fleiss ICC(2,1)), "
        "pooled over all folds; **RGS MAE** its mean absolute error. "
        f"**ICC 95% CI**: weighted percentile bootstrap over rats ({resampling_text(lb)}).",
        "**Derived F1/Acc (pooled)**: the binary pain label derived from the predicted grades (rounded mean >= 1, the paper's "
        "rule) against the image label, one confusion matrix over all folds (F1 of the pain class / accuracy in %).",
        f"**Ranking: by {RANKED_BY}** (undefined last), ties broken by the derived pooled F1. Only each method's registered "
        "configuration is ranked; exploratory, prediction-only and incomplete rows and the human ceiling are never ranked.",
        tier_text(lb),
        "**Several seeds** of one configuration: mean ± sample standard deviation over seeds. Never the best seed.",
        f"**vs top (McNemar)**: McNemar's exact test on the derived binary labels against the top-ranked row; {MARKER} = p < {SIGNIFICANCE}.",
        f"**{au.CEILING_LABEL}**: a single stage-one rater against the consensus (QWK, in brackets Krippendorff's ordinal α "
        "over all raters; RGS ICC(A,1) and MAE, means over the stage-one raters). " + au.CEILING_NOTE[0].upper() + au.CEILING_NOTE[1:] + ".",
    ]
