"""Table cells and wording shared by the Markdown and HTML renderings of both tasks ("F1/Acc%" the way the paper
prints them)."""
from __future__ import annotations

import math
import re

from ..metrics import cell
from . import stats
from .table import MARKER, Leaderboard, Row

DASH = "–"
_MD_SPECIAL = re.compile(r"([\\`*\[\]|#!~])")


def md(text) -> str:
    """An outside string (a name, a folder, a failure reason) as plain text in a Markdown table cell: one line, no HTML,
    no link, image, code span, emphasis or cell break."""
    text = " ".join(str(text).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def _pm(value: float, std: float | None, scale: float = 1.0, digits: int = 4) -> str:
    s = f"{scale * value:.{digits}f}"
    return s if std is None else f"{s}±{scale * std:.{digits}f}"


def pooled_cell(row: Row) -> str:
    """Pooled "F1/Acc%", mean ± std over seeds when there are several, † when it differs from the top row."""
    f1, acc = row.pooled["f1"], row.pooled["accuracy"]
    sf, sa = row.pooled_std.get("f1"), row.pooled_std.get("accuracy")
    text = cell(f1, acc) if sf is None else f"{_pm(f1, sf)}/{_pm(acc, sa, 100, 2)}"
    return text + (f" {MARKER}" if row.significant else "")


def f1_acc_cell(f1: float | None, accuracy: float) -> str:
    """"F1/Acc%", with F1 shown as a dash where it is undefined (no pain image and no pain prediction)."""
    return cell(f1, accuracy) if f1 is not None else f"{DASH}/{100 * accuracy:.2f}"


def mean_cell(row: Row) -> str:
    m, s = row.mean_over_subjects, row.mean_over_subjects_std
    if s.get("f1") is None:
        return f1_acc_cell(m["f1"], m["accuracy"])
    return f"{_pm(m['f1'], s['f1'])}/{_pm(m['accuracy'], s['accuracy'], 100, 2)}"


def rat_cell(row: Row, subject: str) -> str:
    v = row.per_subject.get(subject)
    return f1_acc_cell(v["f1"], v["accuracy"]) if v else DASH


def ci_cell(row: Row, key: str = "pooled_f1") -> str:
    lo, hi = row.ci.get(key, (None, None))
    if lo is None or math.isnan(lo):
        return DASH
    return f"[{lo:.4f}, {hi:.4f}]"


def p_text(p: float) -> str:
    """"p=0.0123" or "p<0.0001"."""
    return "p<0.0001" if p < 1e-4 else f"p={p:.4f}"


def vs_top_cell(row: Row) -> str:
    if row.rank == 1:
        return "top"
    if row.mcnemar is None:
        return DASH
    m = row.mcnemar
    return f"{p_text(m['p_value'])} (b={m['b']}, c={m['c']})" + (f" {MARKER}" if row.significant else "")


def metric_cell(row: Row, key: str) -> str:
    return _pm(row.pooled[key], row.pooled_std.get(key))


def seeds_cell(row: Row) -> str:
    """Which seeds made the row: `seed 0`, or `3 seeds: 0, 1, 2` (never a bare number, which reads as a count)."""
    if not row.seeds:
        return DASH
    return f"seed {row.seeds[0]}" if len(row.seeds) == 1 else f"{len(row.seeds)} seeds: {', '.join(row.seeds)}"


def train_cell(row: Row) -> str:
    return DASH if row.train_seconds is None else f"{row.train_seconds:.1f}"


def code_cell(row: Row) -> str:
    return row.code_hash[:7] if row.code_hash and row.code_hash != "-" else DASH


def rank_cell(row: Row) -> str:
    return str(row.rank) if row.rank is not None else ("not ranked" if row.kind == "unranked" else row.kind)


def tier_cell(row: Row) -> str:
    return str(row.tier) if row.tier is not None else DASH


def reference_cells(ref: dict, subjects) -> list[str]:
    per = ref["per_subject"]
    return ([ref["label"]] + [cell(per[s]["f1"], per[s]["accuracy"]) if s in per else DASH for s in subjects]
            + [cell(ref["pooled"]["f1"], ref["pooled"]["accuracy"]),
               cell(ref["mean_over_subjects"]["f1"], ref["mean_over_subjects"]["accuracy"])])


def pain_share(lb: Leaderboard) -> float:
    pos = sum(d["test_pain"] for d in lb.imbalance)
    return pos / lb.n_images if lb.n_images else 0.0


def top_cells(lb: Leaderboard) -> tuple[str, str, float | str]:
    """The top-ranked row of a board, its score by the board's ranking metric (binary: pooled F1/accuracy; au: pooled
    RGS ICC(A,1)) and that score's sort key: for the index of several boards."""
    if not lb.ranked:
        return DASH, DASH, ""
    top = lb.ranked[0]
    if lb.task == "au":
        icc = top.au["rgs"]["icc_a1"]
        return top.label, f"RGS ICC(A,1) {DASH if icc is None else f'{icc:.4f}'}", "" if icc is None else icc
    return top.label, f"F1/Acc {pooled_cell(top)}", top.pooled["f1"]


def resampling_text(lb: Leaderboard) -> str:
    """How the rats were resampled: every distinct resample (exact) or random draws."""
    if lb.bootstrap_exact:
        return (f"all {lb.distinct_resamples:,} distinct resamples of the {len(lb.subjects)} rats, multisets drawn with "
                "replacement, each weighted by its multinomial probability")
    return (f"{lb.n_resamples:,} random resamples of the rats with replacement, seed {lb.bootstrap_seed} (more than "
            f"{stats.MAX_EXACT:,} distinct resamples: too many to enumerate)")
