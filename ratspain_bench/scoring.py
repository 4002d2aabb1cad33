"""Read, validate and score predictions files (the contract's "Predictions file").

A predictions file is a CSV with header; `image,subject,y_true,y_pred` are required, `score`
(probability of pain, blank allowed), `fold`, `method` and `seed` optional, other columns ignored.
Validation collects every problem and raises `InputError` with the first one as `file:line: message`
(line 1 is the header) and how many more there are.

A file may hold several (method, seed) runs. Each is scored on its own with `metrics.score`:
- `to_json` gives the contract's object when the file (or the `--method`/`--seed` selection) holds one
  run, and a list of such objects, each with two more keys `method` and `seed`, when it holds several;
- `to_markdown` gives one paper-style row per run: `Method | Rat#<id>... | LORO`, each cell
  "F1/accuracy%" ("0.7731/74.17"), the LORO cell from the confusion matrix pooled over all subjects.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError, where
from .metrics import cell, score

REQUIRED = ("image", "subject", "y_true", "y_pred")
OPTIONAL = ("score", "fold", "method", "seed")
_BINARY = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}


@dataclass(frozen=True, eq=False)
class Predictions:
    """A validated predictions file: `table` has image, subject, y_true, y_pred, score (NaN if absent),
    fold, method, seed (strings, "" if absent) and line (its line in the file)."""

    source: str
    table: pd.DataFrame

    def runs(self) -> list[tuple[str, str, pd.DataFrame]]:
        """(method, seed, rows) for each run in the file, in order of first appearance."""
        keys = list(dict.fromkeys(zip(self.table["method"], self.table["seed"])))
        return [(m, s, self.table[(self.table["method"] == m) & (self.table["seed"] == s)]) for m, s in keys]


def _fail(problems: list[str]) -> None:
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    raise InputError(f"{problems[0]}{more}")


def read_predictions(path) -> Predictions:
    """Read and validate a predictions CSV; raises `InputError` naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such predictions file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not text.strip():
        raise InputError(f"{path}: empty file (expected a CSV header with {','.join(REQUIRED)})")
    reader = csv.reader(text.splitlines())
    header = [h.strip() for h in next(reader)]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InputError(f"{where(path, 1)}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                         f"(header: {','.join(header)}; required: {','.join(REQUIRED)})")
    col = {c: header.index(c) for c in REQUIRED + OPTIONAL if c in header}
    problems, rows, seen = [], [], {}
    for values in reader:
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue
        at = where(path, line)
        if len(values) != len(header):
            problems.append(f"{at}: {len(values)} fields, the header has {len(header)}")
            continue
        get = lambda c: values[col[c]].strip() if c in col else ""  # noqa: E731
        rec = {c: get(c) for c in ("image", "subject", "fold", "method", "seed")}
        bad = False
        for c in ("image", "subject"):
            if not rec[c]:
                problems.append(f"{at}: empty {c}")
                bad = True
        for c in ("y_true", "y_pred"):
            v = _BINARY.get(get(c))
            if v is None:
                problems.append(f"{at}: {c} must be 0 or 1 (0 no pain, 1 pain), got {get(c)!r}")
                bad = True
            rec[c] = v
        rec["score"] = math.nan
        if get("score"):
            try:
                s = float(get("score"))
            except ValueError:
                s = math.nan
            if not (0.0 <= s <= 1.0):
                problems.append(f"{at}: score must be a probability of pain in [0, 1] (or blank), got {get('score')!r}")
                bad = True
            rec["score"] = s
        key = (rec["method"], rec["seed"], rec["image"])
        if rec["image"] and key in seen:
            run = _run_name(rec["method"], rec["seed"])
            problems.append(f"{at}: image {rec['image']} listed twice{' for ' + run if run else ''} (first at line {seen[key]})")
            bad = True
        elif rec["image"]:
            seen[key] = line
        if not bad:
            rec["line"] = line
            rows.append(rec)
    if problems:
        _fail(problems)
    if not rows:
        raise InputError(f"{where(path, 1)}: no prediction rows after the header")
    table = pd.DataFrame(rows, columns=["image", "subject", "y_true", "y_pred", "score", "fold", "method", "seed", "line"])
    return Predictions(str(path), table)


def _run_name(method: str, seed: str) -> str:
    parts = ([f"method {method}"] if method else []) + ([f"seed {seed}"] if seed else [])
    return " ".join(parts)


def select(preds: Predictions, method: str | None = None, seed: str | None = None) -> Predictions:
    """Only the rows of one method and/or seed; `InputError` listing the runs present if none match."""
    t = preds.table
    keep = np.ones(len(t), bool)
    if method is not None:
        keep &= (t["method"] == method).to_numpy()
    if seed is not None:
        keep &= (t["seed"] == str(seed)).to_numpy()
    if not keep.any():
        present = ", ".join(_run_name(m, s) or "(no method/seed columns)" for m, s, _ in preds.runs())
        want = _run_name(method or "", "" if seed is None else str(seed))
        raise InputError(f"{preds.source}: no rows for {want}; the file holds: {present}")
    return Predictions(preds.source, t[keep].reset_index(drop=True))


def _seed_value(seed: str):
    return int(seed) if seed.lstrip("-").isdigit() else (seed or None)


def score_runs(preds: Predictions) -> list[dict]:
    """[{"method", "seed", "result": metrics.score(...)}] for each run of the file."""
    out = []
    for method, seed, rows in preds.runs():
        result = score(rows["y_true"].to_numpy(), rows["y_pred"].to_numpy(), rows["subject"].to_numpy())
        out.append({"method": method or None, "seed": _seed_value(seed), "result": result})
    return out


def to_json(scored: list[dict]):
    """The contract's object for one run; a list of them, each with `method` and `seed`, for several."""
    if len(scored) == 1:
        return scored[0]["result"]
    return [{"method": s["method"], "seed": s["seed"], **s["result"]} for s in scored]


def to_markdown(scored: list[dict], default_name: str = "predictions") -> str:
    """Paper-style rows: Method | Rat#<id> ... | LORO, cells "F1/accuracy%"."""
    from tabulate import tabulate

    from .data.dataset import sort_subjects

    subjects = sort_subjects({s for r in scored for s in r["result"]["per_subject"]})
    several_seeds = len({r["seed"] for r in scored}) > 1
    rows = []
    for r in scored:
        res = r["result"]
        name = r["method"] or default_name
        if several_seeds and r["seed"] is not None:
            name = f"{name} (seed {r['seed']})"
        per = [cell(res["per_subject"][s]["f1"], res["per_subject"][s]["accuracy"]) if s in res["per_subject"] else ""
               for s in subjects]
        rows.append([name, *per, cell(res["pooled"]["f1"], res["pooled"]["accuracy"])])
    return tabulate(rows, headers=["Method", *(f"Rat#{s}" for s in subjects), "LORO"], tablefmt="github",
                    disable_numparse=True) + "\n"
