"""Predictions: the one set of rules, for a method's output and for a predictions file.

Rules (the contract's "Predictions file"): one row per test image, `y_pred` 0 (no pain) or 1 (pain),
`score` a probability of pain in [0, 1] (blank allowed in a file, required from a method), and in a
file `image`, `subject` non-empty and each image once per (method, seed).

- `check_output(labels, scores, n)`: a method's returned arrays -> `Predictions`, or `InvalidOutput`
  saying which rule failed (the fold path applies it to every method, in-process or sandboxed).
- `read_predictions(path, truth=True)`: a CSV, every problem collected and reported as
  `file:line: message (and N more)`; `truth=False` for prediction-only entries (their `y_true`, if
  any, is ignored: the harness scores against the dataset's own labels).
- `score_runs`, `to_json`, `to_markdown`: each (method, seed) run of a file scored on its own
  (`metrics.score`); one run gives the contract's object, several a list with `method` and `seed`.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError, where
from ..methods.base import Predictions
from ..metrics import cell, score
from ..tasks import AUS, GRADES, by_au, derived_label

REQUIRED = ("image", "subject", "y_true", "y_pred")
OPTIONAL = ("score", "fold", "method", "seed")
AU_TRUE = tuple(f"y_true_au_{a}" for a in AUS)  # the au task: consensus grade 0/1/2, blank when none was accepted
AU_PRED = tuple(f"y_pred_au_{a}" for a in AUS)  # the au task: predicted grade 0/1/2
_GRADE = {"0": 0, "1": 1, "2": 2, "0.0": 0, "1.0": 1, "2.0": 2}
_BINARY = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}
LABEL_RULE = "must be 0 or 1 (0 no pain, 1 pain)"
SCORE_RULE = "must be a probability of pain in [0, 1]"


class InvalidOutput(ValueError):
    """A method's predictions break a rule: `rule` is shape, labels, probabilities or predict_type."""

    def __init__(self, message: str, rule: str):
        super().__init__(message)
        self.rule = rule


def check_output(labels, scores, n: int, au: dict | None = None, task: str = "binary") -> Predictions:
    """`Predictions` from a method's arrays, checked: one label and one score per test image; in the au task also
    one grade 0/1/2 per image for each AU, and the label is then the one derived from the grades (`tasks`)."""
    if task == "au":
        grades = _check_au(au, n)
        labels = derived_label(grades)
    try:
        labels = np.asarray(labels)
        scores = np.asarray(scores, dtype=float)
    except (TypeError, ValueError) as e:
        raise InvalidOutput(f"labels and scores must be numeric arrays ({e})", "predict_type") from None
    if labels.shape != (n,) or scores.shape != (n,):
        raise InvalidOutput(f"labels {labels.shape} and scores {scores.shape} for {n} test images (expected one per test image)", "shape")
    if not np.isin(labels, (0, 1)).all():
        raise InvalidOutput(f"labels {LABEL_RULE}; got {sorted(set(labels.ravel().tolist()) - {0, 1})[:5]}", "labels")
    if np.isnan(scores).any() or (n and (scores.min() < 0 or scores.max() > 1)):
        raise InvalidOutput(f"scores {SCORE_RULE} (no NaN); got range [{np.nanmin(scores) if n else 0:.3g}, "
                            f"{np.nanmax(scores) if n else 0:.3g}]", "probabilities")
    return Predictions(labels.astype(int), scores, au=by_au(grades) if task == "au" else None)


def _check_au(au, n: int) -> np.ndarray:
    if not isinstance(au, dict):
        raise InvalidOutput(f"the au task needs Predictions.au, a dict of grades per action unit ({', '.join(AUS)})", "au")
    missing = [a for a in AUS if a not in au]
    if missing:
        raise InvalidOutput(f"Predictions.au lacks {', '.join(missing)} (expected {', '.join(AUS)})", "au")
    try:
        grades = np.stack([np.asarray(au[a], dtype=float) for a in AUS], axis=1)
    except (TypeError, ValueError) as e:
        raise InvalidOutput(f"Predictions.au must hold one numeric array per action unit ({e})", "au") from None
    if grades.shape != (n, len(AUS)):
        raise InvalidOutput(f"Predictions.au arrays {grades.shape[:1]} for {n} test images (expected one grade per test image)", "shape")
    if not np.isin(grades, GRADES).all():
        raise InvalidOutput(f"AU grades must be 0, 1 or 2; got {sorted(set(grades.ravel().tolist()) - set(GRADES))[:5]}", "au")
    return grades.astype(int)


@dataclass(frozen=True, eq=False)
class PredictionsFile:
    """A validated predictions file: `table` has image, subject, y_true (-1 when not read), y_pred, score
    (NaN if absent), fold, method, seed (strings, "" if absent) and line (its line in the file)."""

    source: str
    table: pd.DataFrame

    def runs(self) -> list[tuple[str, str, pd.DataFrame]]:
        """(method, seed, rows) for each run in the file, in order of first appearance."""
        keys = list(dict.fromkeys(zip(self.table["method"], self.table["seed"])))
        return [(m, s, self.table[(self.table["method"] == m) & (self.table["seed"] == s)]) for m, s in keys]


def _fail(problems: list[str]) -> None:
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    raise InputError(f"{problems[0]}{more}")


def _run_name(method: str, seed: str) -> str:
    parts = ([f"method {method}"] if method else []) + ([f"seed {seed}"] if seed else [])
    return " ".join(parts)


def read_predictions(path, truth: bool = True) -> PredictionsFile:
    """Read and validate a predictions CSV; raises `InputError` naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such predictions file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    required = REQUIRED if truth else tuple(c for c in REQUIRED if c != "y_true")
    if not text.strip():
        raise InputError(f"{path}: empty file (expected a CSV header with {','.join(required)})")
    reader = csv.reader(text.splitlines())
    header = [h.strip() for h in next(reader)]
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(f"{where(path, 1)}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                         f"(header: {','.join(header)}; required: {','.join(required)})")
    col = {c: header.index(c) for c in REQUIRED + OPTIONAL + AU_TRUE + AU_PRED if c in header}
    binary = ("y_true", "y_pred") if truth else ("y_pred",)
    grades = _au_columns(path, header, truth)
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
        rec["y_true"] = -1
        for c in binary:
            v = _BINARY.get(get(c))
            if v is None:
                problems.append(f"{at}: {c} {LABEL_RULE}, got {get(c)!r}")
                bad = True
            rec[c] = v
        for c in grades:
            v = get(c)
            rec[c] = _GRADE.get(v, pd.NA if v == "" and c in AU_TRUE else None)
            if rec[c] is None:
                problems.append(f"{at}: {c} must be 0, 1 or 2{' (or blank)' if c in AU_TRUE else ''}, got {v!r}")
                bad = True
        rec["score"] = math.nan
        if get("score"):
            try:
                s = float(get("score"))
            except ValueError:
                s = math.nan
            if not (0.0 <= s <= 1.0):
                problems.append(f"{at}: score {SCORE_RULE} (or blank), got {get('score')!r}")
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
    table = pd.DataFrame(rows, columns=["image", "subject", "y_true", "y_pred", "score", "fold", "method", "seed", *grades, "line"])
    for c in grades:
        table[c] = table[c].astype("Int64")
    return PredictionsFile(str(path), table)


def _au_columns(path: Path, header: list[str], truth: bool) -> tuple[str, ...]:
    """The AU columns of an au-task file: none, or all of them (y_true_au_* only when truth is read)."""
    want = (AU_TRUE if truth else ()) + AU_PRED
    present = [c for c in AU_TRUE + AU_PRED if c in header]
    if not present:
        return ()
    missing = [c for c in want if c not in header]
    if missing:
        raise InputError(f"{where(path, 1)}: an au-task file needs every AU column: missing {', '.join(missing)}")
    return want


def select(preds: PredictionsFile, method: str | None = None, seed: str | None = None) -> PredictionsFile:
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
    return PredictionsFile(preds.source, t[keep].reset_index(drop=True))


def _seed_value(seed: str):
    return int(seed) if seed.lstrip("-").isdigit() else (seed or None)


def score_frame(frame: pd.DataFrame) -> dict:
    """The contract's score object of a predictions frame (columns y_true, y_pred, subject); for an au-task frame
    (its AU columns) also `action_units` (`metrics_au.score_au`: per AU and RGS agreement, pooled and per subject)."""
    out = score(frame["y_true"].to_numpy(), frame["y_pred"].to_numpy(), frame["subject"].astype(str).to_numpy())
    if all(c in frame.columns for c in AU_TRUE + AU_PRED):
        from ..metrics_au import score_au

        out["action_units"] = score_au(frame)
    return out


def score_runs(preds: PredictionsFile) -> list[dict]:
    """[{"method", "seed", "result": metrics.score(...)}] for each run of the file."""
    return [{"method": method or None, "seed": _seed_value(seed), "result": score_frame(rows)} for method, seed, rows in preds.runs()]


def to_json(scored: list[dict]):
    """The contract's object for one run; a list of them, each with `method` and `seed`, for several."""
    if len(scored) == 1:
        return scored[0]["result"]
    return [{"method": s["method"], "seed": s["seed"], **s["result"]} for s in scored]


def to_markdown(scored: list[dict], default_name: str = "predictions") -> str:
    """Paper-style rows: Method | Rat#<id> ... | LORO, cells "F1/accuracy%"."""
    from tabulate import tabulate

    from ..data.dataset import sort_subjects

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
