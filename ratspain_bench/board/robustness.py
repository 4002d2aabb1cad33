"""The robustness board: beside Table 3, how each method holds up when the test faces move away from the training
faces (the paper's claim of head-pose invariance, and the cross-lab question of the field).

Per method, on one dataset (binary task), from its latest complete run under each protocol:
- LORO: pooled F1 (the main board's figure);
- pose-shift (trained on frontal faces only): pooled F1 over the held-out rats' faces of each pose bin, and the
  drop from frontal to extreme test faces;
- each leave-one-group-out:COLUMN run (leave-one-site-out where the data has sites): pooled F1.
Intervals are 95% percentile bootstraps over rats (`stats.rat_resamples`, exact for six rats); the drop's is paired:
each resample draws the same rats for both bins, so "PainSeeker degrades less than ResNet-18" is read from
intervals that carry the uncertainty of six animals. Ranked by LORO F1, as the paper ranks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

import numpy as np

from . import stats

POSE_BINS = ("frontal", "moderate", "extreme")
LEVEL = 0.95


@dataclass(frozen=True)
class Cell:
    """A pooled F1 (or a difference of two) with its interval over rats and the number of images behind it."""

    value: float
    low: float
    high: float
    n: int

    def text(self, signed: bool = False) -> str:
        if np.isnan(self.value):
            return "–"
        fmt = "{:+.3f}" if signed else "{:.3f}"
        return f"{fmt.format(self.value)} [{fmt.format(self.low)}, {fmt.format(self.high)}]"


@dataclass(frozen=True)
class Row:
    method: str
    loro: Cell | None = None
    bins: dict[str, Cell] = field(default_factory=dict)  # pose-shift, per pose bin of the test faces
    drop: Cell | None = None  # pose-shift: frontal minus extreme
    groups: dict[str, Cell] = field(default_factory=dict)  # leave-one-group-out:COLUMN -> its pooled F1


@dataclass(frozen=True)
class Board:
    dataset: str
    fingerprint: str
    rows: tuple[Row, ...]
    pose_protocol: str  # the pose-shift variant shown ("" when none ran)
    group_protocols: tuple[str, ...]
    resamples: str = ""  # how the intervals were drawn, in words


def _per_rat(frame, rats: list[str]) -> np.ndarray:
    """(S, 4) confusion counts (tp, fp, fn, tn) per rat of `rats` (zeros where a rat has no image in `frame`)."""
    out = np.zeros((len(rats), 4))
    y, p = frame["y_true"].to_numpy(int), frame["y_pred"].to_numpy(int)
    at = {r: i for i, r in enumerate(rats)}
    for r, t, q in zip(frame["subject"].astype(str), y, p):
        out[at[r], (0 if q else 3) if t == q else (1 if q else 2)] += 1
    return out


def _cell(stat: np.ndarray, value: float, n: int, r: stats.Resamples) -> Cell:
    a = (1 - LEVEL) / 2
    return Cell(float(value), stats.weighted_quantile(stat, r.weights, a), stats.weighted_quantile(stat, r.weights, 1 - a), n)


def _f1(cm: np.ndarray, r: stats.Resamples) -> Cell:
    return _cell(stats.pooled_f1_statistic(cm, r), float(stats.f1_of(cm.sum(axis=0))), int(cm.sum()), r)


def _name(key: str) -> str:
    """A protocol's id from its key (`pose-shift-v1` -> `pose-shift`)."""
    return key.rsplit("-v", 1)[0]


def _latest(records) -> dict[tuple[str, str], object]:
    """(method, protocol key) -> its latest complete record with predictions."""
    out = {}
    for r in sorted(records, key=lambda r: r.start_time):
        if r.status == "complete" and r.predictions is not None and (r.task or "binary") == "binary":
            out[(r.method, r.protocol)] = r
    return out


def build(records, n_resamples: int = 2000, seed: int = 0) -> list[Board]:
    """One board per dataset (and fingerprint) that has runs of another protocol than loro; [] when none has."""
    by_data: dict[tuple[str, str], list] = {}
    for r in records:
        by_data.setdefault((r.dataset, r.fingerprint), []).append(r)
    boards = []
    for (dataset, fp), recs in sorted(by_data.items()):
        latest = _latest(recs)
        keys = {k for _, k in latest}
        if not keys - {""}:
            continue
        poses = sorted(k for k in keys if _name(k).startswith("pose-shift"))
        pose = "pose-shift-v1" if "pose-shift-v1" in poses else (poses[0] if poses else "")
        groups = tuple(sorted(k for k in keys if _name(k).startswith("leave-one-group-out")))
        rats = stats_rats(latest.values())
        r = stats.rat_resamples(len(rats), n_resamples, seed)
        rows = []
        for method in sorted({m for m, _ in latest}):
            row = Row(method)
            if (method, "") in latest:
                row = Row(method, loro=_f1(_per_rat(latest[method, ""].predictions, rats), r))
            if pose and (method, pose) in latest:
                preds = latest[method, pose].predictions
                cms = {b: _per_rat(preds[preds["pose_bin"].astype(str) == b], rats) for b in POSE_BINS} if "pose_bin" in preds else {}
                bins = {b: _f1(cm, r) for b, cm in cms.items() if cm.sum() > 0}
                drop = None
                if "frontal" in bins and "extreme" in bins:
                    d = stats.pooled_f1_statistic(cms["frontal"], r) - stats.pooled_f1_statistic(cms["extreme"], r)
                    drop = _cell(d, bins["frontal"].value - bins["extreme"].value, bins["frontal"].n + bins["extreme"].n, r)
                row = Row(method, row.loro, bins, drop)
            for g in groups:
                if (method, g) in latest:
                    row.groups[_name(g)] = _f1(_per_rat(latest[method, g].predictions, rats), r)
            rows.append(row)
        rows.sort(key=lambda x: (x.loro is None, -(x.loro.value if x.loro and not np.isnan(x.loro.value) else -1), x.method))
        drawn = f"every distinct resample of {len(rats)} rats" if r.exact else f"{n_resamples} resamples of {len(rats)} rats"
        boards.append(Board(dataset, fp, tuple(rows), _name(pose) if pose else "", tuple(_name(g) for g in groups), drawn))
    return boards


def stats_rats(records) -> list[str]:
    """Every rat of the records' predictions, in natural order."""
    from ..data.dataset import sort_subjects

    return sort_subjects({str(s) for rec in records for s in rec.predictions["subject"]})


# ---------------------------------------------------------------- rendering


def _columns(b: Board) -> list[tuple[str, str]]:
    """(header, help) of each figure column after Rank and Method."""
    cols = [("LORO F1", "leave-one-rat-out, pooled F1 (the main board's figure)")]
    if b.pose_protocol:
        cols += [(f"pose-shift F1: {x}", f"trained on frontal faces only; pooled F1 over the held-out rats' {x} faces")
                 for x in POSE_BINS]
        cols.append(("drop frontal → extreme", "pose-shift F1 on frontal faces minus on extreme faces (paired over rats)"))
    cols += [(f"{g} F1", f"pooled F1 under {g}") for g in b.group_protocols]
    return cols


def _cells(b: Board, row: Row) -> list[Cell | None]:
    out: list[Cell | None] = [row.loro]
    if b.pose_protocol:
        out += [row.bins.get(x) for x in POSE_BINS] + [row.drop]
    return out + [row.groups.get(g) for g in b.group_protocols]


def definitions(b: Board) -> list[str]:
    return [f"Cells: pooled F1 of the pain class [{LEVEL:.0%} interval: percentile bootstrap over rats, {b.resamples}]; "
            "the drop's interval is paired (the same rats drawn for both bins).",
            "pose-shift: each fold trains on the other rats' frontal faces only (|yaw| < 15°) and scores every face of the "
            "held-out rat; the bins are the test faces' (moderate: 15-40°, extreme: beyond). A method that is pose-invariant "
            "shows a drop whose interval holds 0.",
            "leave-one-group-out:COLUMN: one fold per value of COLUMN (leave-one-site-out with `site`); a method that "
            "transfers between labs scores near its LORO figure.",
            "Ranked by LORO F1, as the paper ranks (Table 3). Each cell is the method's latest complete run under that "
            "protocol on this dataset."]


def render_markdown(b: Board) -> str:
    from .cells import md

    cols = _columns(b)
    head = ["Rank", "Method"] + [c for c, _ in cols]
    lines = [f"# Robustness: {md(b.dataset)}", "",
             "Beside Table 3: how each method's pooled F1 moves when the test faces move away from the training faces "
             "(the paper's claim of head-pose invariance, and transfer between labs). Protocols: `ratspain-bench run "
             "--protocol pose-shift`, `--protocol leave-one-group-out:site`.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, row in enumerate(b.rows, 1):
        cells = [c.text(signed=j == len(POSE_BINS) + 1 and bool(b.pose_protocol)) if c else "–"
                 for j, c in enumerate(_cells(b, row))]
        lines.append("| " + " | ".join([str(i) if row.loro else "", md(row.method)] + cells) + " |")
    lines += [""] + [f"- {d}" for d in definitions(b)] + [""]
    return "\n".join(lines)


def render_html(b: Board) -> str:
    from .render_html import CSS, JS, _td, _th

    cols = _columns(b)
    head = [_th("Rank"), _th("Method", numeric=False)] + [_th(c, title=h) for c, h in cols]
    body = []
    for i, row in enumerate(b.rows, 1):
        tds = [_td(str(i) if row.loro else "", i if row.loro else None), _td(row.method, row.method, cls="text")]
        for j, c in enumerate(_cells(b, row)):
            signed = bool(b.pose_protocol) and j == len(POSE_BINS) + 1
            tds.append(_td(c.text(signed) if c else "–", None if c is None or np.isnan(c.value) else float(c.value)))
        body.append("<tr>" + "".join(tds) + "</tr>")
    return "\n".join([
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">', '<link rel="icon" href="data:,">',
        f"<title>Robustness: {escape(b.dataset)}</title>", f"<style>{CSS}</style></head><body>",
        f"<header><h1>Robustness: {escape(b.dataset)}</h1><p class=\"meta\">Beside Table 3 (<a href=\"index.html\">the "
        "leaderboard</a>): pooled F1 when the test faces move away from the training faces. Ranked by LORO F1; click a "
        "column header to sort.</p></header><main>",
        '<div class="scroll"><table id="robustness-table" class="sortable"><thead><tr>' + "".join(head)
        + "</tr></thead><tbody>" + "\n".join(body) + "</tbody></table></div>",
        '<ul class="defs">' + "".join(f"<li>{escape(d)}</li>" for d in definitions(b)) + "</ul>",
        "</main>", f"<script>{JS}</script>", "</body></html>", ""])
