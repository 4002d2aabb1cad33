"""Prediction-only submissions: a predictions CSV for a named dataset, checked, scored, recorded.

The file has a header and one row per test image; under leave-one-rat-out every image of the
dataset is a test image exactly once. Columns: `image` (the manifest's `path`, or its file name when
that is unique), `subject`, `y_pred` (0/1) required; `score` (probability of pain in [0, 1], blank
allowed), `fold`, `method`, `seed` optional; `y_true` is ignored: the harness scores against the
dataset's own labels.

Recording (`submit validate ... --record`) writes one MLflow parent run in the dataset's experiment
with the leaderboard's conventions (`ratspain.role=parent`, `ratspain.status=complete`, the pooled
metrics, a `predictions.csv` artifact) and `ratspain.source=predictions-only`, plus one child run
per held-out subject (`ratspain.role=fold`). The leaderboard shows it with that source.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .. import metrics, tracking
from ..data.dataset import sort_subjects
from .checks import FAIL, PASS, WARN, Report

SOURCE = "predictions-only"
REQUIRED = ("image", "subject", "y_pred")
_BINARY = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}


def _few(items, n: int = 3) -> str:
    items = list(items)
    return ", ".join(map(str, items[:n])) + (f" and {len(items) - n} more" if len(items) > n else "")


def read_file(report: Report, path: Path) -> pd.DataFrame | None:
    """Rows as strings plus `line`; adds `predictions.format`."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        report.add("predictions.format", FAIL, f"{path}: cannot read ({e})", "save the predictions as a UTF-8 CSV file")
        return None
    reader = csv.reader(text.splitlines())
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        report.add("predictions.format", FAIL, f"{path}:1: missing column(s) {', '.join(missing)} (header: {','.join(header) or 'empty'})",
                   "write a header line image,subject,y_pred[,score] and one row per test image")
        return None
    rows, bad = [], []
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        line = reader.line_num
        if len(values) != len(header):
            bad.append(f"line {line}: {len(values)} fields, the header has {len(header)}")
            continue
        rec = {h: v.strip() for h, v in zip(header, values)}
        if rec["y_pred"] not in _BINARY:
            bad.append(f"line {line}: y_pred {rec['y_pred']!r} is not 0 or 1")
        if rec.get("score", ""):
            try:
                s = float(rec["score"])
            except ValueError:
                s = math.nan
            if not 0.0 <= s <= 1.0:
                bad.append(f"line {line}: score {rec['score']!r} is not a probability in [0, 1]")
        for c in ("image", "subject"):
            if not rec[c]:
                bad.append(f"line {line}: empty {c}")
        rec["line"] = line
        rows.append(rec)
    if bad:
        report.add("predictions.format", FAIL, f"{path}: {len(bad)} bad row(s): {_few(bad)}",
                   "y_pred must be 0 (no pain) or 1 (pain); score blank or a probability of pain in [0, 1]")
        return None
    if not rows:
        report.add("predictions.format", FAIL, f"{path}: no rows after the header", "write one row per test image")
        return None
    frame = pd.DataFrame(rows)
    keys = [c for c in ("method", "seed") if c in frame.columns]
    runs = frame[keys].drop_duplicates() if keys else frame.iloc[:1]
    if len(runs) > 1:
        report.add("predictions.format", FAIL, f"{path}: holds {len(runs)} (method, seed) runs",
                   "submit one run per file (split the file by method and seed)")
        return None
    report.add("predictions.format", PASS, f"{len(frame)} rows with columns {', '.join(c for c in frame.columns if c != 'line')}")
    return frame


def check(report: Report, path: Path, dataset) -> pd.DataFrame | None:
    """Every test image exactly once, known images and subjects; returns the harness's frame (with y_true)."""
    frame = read_file(report, path)
    if frame is None:
        return None
    t = dataset.table
    ids = t["image"].astype(str).tolist()
    exact = set(ids)
    base = {}
    for i in ids:
        base.setdefault(os.path.basename(i), []).append(i)
    mapped, unknown, by_name = [], [], 0
    for img in frame["image"]:
        if img in exact:
            mapped.append(img)
        elif len(base.get(os.path.basename(img), [])) == 1:
            mapped.append(base[os.path.basename(img)][0])
            by_name += 1
        else:
            mapped.append(None)
            unknown.append(img)
    frame = frame.assign(image_id=mapped)
    dup = frame["image_id"].dropna()
    dup = sorted(set(dup[dup.duplicated()]))
    missing = sorted(exact - set(frame["image_id"].dropna()))
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} unknown image(s): {_few(unknown)}")
    if dup:
        problems.append(f"{len(dup)} image(s) listed more than once: {_few(dup)}")
    if missing:
        problems.append(f"{len(missing)} of {len(exact)} test image(s) missing: {_few(missing)}")
    if problems:
        report.add("predictions.images", FAIL, "; ".join(problems),
                   f"write exactly one row per image of {dataset.name} ({len(exact)} images; ids as in the manifest's path column, e.g. {ids[0]!r})")
        return None
    note = f" ({by_name} matched by file name)" if by_name else ""
    report.add("predictions.images", PASS, f"every one of the {len(exact)} test images of {dataset.name} appears exactly once{note}")
    truth = t.set_index("image")
    subj = truth.loc[frame["image_id"], "subject"].astype(str).to_numpy()
    wrong = frame["subject"].astype(str).to_numpy() != subj
    known = set(t["subject"].astype(str))
    if wrong.any():
        bad = frame[wrong]
        unknown_s = sorted(set(bad["subject"]) - known)
        what = f"unknown subject(s) {_few(unknown_s)}; " if unknown_s else ""
        report.add("predictions.subjects", FAIL, f"{what}{int(wrong.sum())} row(s) name another subject than the dataset, e.g. line "
                   f"{bad['line'].iloc[0]}: {bad['image'].iloc[0]} is subject {subj[wrong][0]!r}, not {bad['subject'].iloc[0]!r}",
                   "give each image its animal id from the dataset (the subject held out in the fold that predicted it)")
        return None
    report.add("predictions.subjects", PASS, f"subjects agree with the dataset ({len(known)} rats)")
    y_true = truth.loc[frame["image_id"], "label"].astype(int).to_numpy()
    if "y_true" in frame.columns:
        given = frame["y_true"].map(_BINARY)
        differ = int((given.notna() & (given.fillna(-1).astype(int).to_numpy() != y_true)).sum())
        if differ:
            report.add("predictions.y_true", WARN, f"y_true differs from the dataset's labels on {differ} row(s): ignored",
                       "drop the y_true column; the harness scores against the dataset's labels")
    score = pd.to_numeric(frame["score"], errors="coerce") if "score" in frame.columns else pd.Series(np.nan, index=frame.index)
    out = pd.DataFrame({"image": frame["image_id"].to_numpy(), "subject": subj, "y_true": y_true,
                        "y_pred": frame["y_pred"].map(_BINARY).astype(int).to_numpy(), "score": score.to_numpy(), "fold": subj})
    s = metrics.score(out["y_true"], out["y_pred"], out["subject"])
    report.extra["score"] = s
    p = s["pooled"]
    report.add("score", PASS, f"scored by the harness: pooled F1 {p['f1']:.4f}, accuracy {100 * p['accuracy']:.2f}% "
                              f"(TP {p['tp']}, FP {p['fp']}, FN {p['fn']}, TN {p['tn']}); mean F1 over rats {s['mean_over_subjects']['f1']:.4f}")
    return out.assign(_method=frame["method"].iloc[0] if "method" in frame.columns else "",
                      _seed=frame["seed"].iloc[0] if "seed" in frame.columns else "")


def fingerprint(dataset) -> str:
    """The runner's dataset fingerprint (labels + image content), so the leaderboard groups the run with others."""
    if dataset.has_images and all(Path(f).is_file() for f in dataset.table["file"]):
        from ..data.cache import content_keys

        keys = content_keys(dataset.table["file"].tolist())
        return hashlib.sha1((dataset.fingerprint() + "|".join(keys)).encode()).hexdigest()[:16]
    return dataset.fingerprint()


def record(report: Report, frame: pd.DataFrame, dataset, name: str, meta: dict, runs_dir, tracking_uri=None, source_file: str = "") -> str:
    """One parent run (role=parent, source predictions-only, complete) and a child per subject; returns the run id."""
    seed = str(frame["_seed"].iloc[0] or meta.get("seed", 0))
    preds = frame.drop(columns=["_method", "_seed"]).assign(method=name, seed=seed)
    digest = hashlib.sha1(preds[["image", "y_pred", "score"]].to_csv(index=False).encode()).hexdigest()[:12]
    fp = fingerprint(dataset)
    c = tracking.client(runs_dir, tracking_uri)
    exp = tracking.experiment_id(c, dataset.name, runs_dir)
    key = {"method": name, "dataset_fingerprint": fp, "seed": seed, "config_hash": digest, "role": "parent"}
    for r in tracking.find_runs(c, exp, **key):
        if r.data.tags.get("ratspain.status") == "complete" and r.data.tags.get("ratspain.source") == SOURCE:
            report.add("record", PASS, f"already recorded as MLflow run {r.info.run_id} (same predictions): nothing to do")
            return r.info.run_id
    subjects = sort_subjects(preds["subject"].unique())
    s = metrics.score(preds["y_true"], preds["y_pred"], preds["subject"])
    parent = c.create_run(exp, run_name=f"{name} (predictions only)", tags={
        **{f"ratspain.{k}": str(v) for k, v in key.items()}, "ratspain.dataset": dataset.name, "ratspain.profile": "predictions",
        "ratspain.source": SOURCE, "ratspain.status": "running", "ratspain.folds_expected": str(len(subjects)),
        "ratspain.hardware": "n/a (predictions only)", "ratspain.cite": str(meta.get("paper", ""))[:5000]})
    pid = parent.info.run_id
    tracking.log(c, pid, params={"method": name, "family": SOURCE, "seed": seed, "profile": "predictions", "protocol": "loro",
                                 "dataset": dataset.name, "dataset_fingerprint": fp, "predictions_sha1": digest, "source_file": source_file,
                                 **{k: (", ".join(v) if isinstance(v, list) else v) for k, v in meta.items()
                                    if k in ("authors", "contact", "paper", "licence", "license", "description", "version", "code")}})
    for subj in subjects:
        g = preds[preds["subject"] == subj]
        child = c.create_run(exp, run_name=f"{name} fold {subj}", tags={
            "mlflow.parentRunId": pid, "ratspain.role": "fold", "ratspain.subject": subj, "ratspain.status": "complete"})
        tracking.log(c, child.info.run_id, metrics={**metrics.summary(metrics.confusion(g["y_true"], g["y_pred"])), "n_test": len(g)})
        c.set_terminated(child.info.run_id, "FINISHED")
    with tempfile.TemporaryDirectory(prefix="ratspain-record-") as tmp:
        p = Path(tmp) / "predictions.csv"
        preds.to_csv(p, index=False)
        (Path(tmp) / "score.json").write_text(json.dumps(s, indent=1))
        c.log_artifact(pid, str(p))
        c.log_artifact(pid, str(Path(tmp) / "score.json"))
    pooled = s["pooled"]
    tracking.log(c, pid, metrics={**{f"pooled_{k}": pooled[k] for k in ("f1", "accuracy", "balanced_accuracy", "mcc")},
                                  "mean_f1": s["mean_over_subjects"]["f1"], "mean_accuracy": s["mean_over_subjects"]["accuracy"],
                                  "folds_complete": len(subjects)},
                 tags={"ratspain.status": "complete"})
    c.set_terminated(pid, "FINISHED")
    report.add("record", PASS, f"recorded as MLflow run {pid} in experiment ratspain/{dataset.name} (source {SOURCE}); "
                               "`ratspain-bench leaderboard` now lists it")
    return pid
