"""Prediction-only entries: a predictions CSV for one dataset, checked, and recorded by a maintainer.

The file has a header and one row per test image; under leave-one-rat-out every image of the
dataset is a test image exactly once. Columns: `image` (the manifest's `path`, or its file name when
that is unique), `subject`, `y_pred` (0/1) required; `score` (probability of pain in [0, 1], blank
allowed), `fold`, `method`, `seed` optional; `y_true` is ignored (the same reader and rules as
`score`, `evaluation.predictions`).

Validation reports format checks only, never a score: scores (or a confusion matrix) against the
dataset's labels would let repeated calls recover them. Recording (`--record`) needs a folder whose
`submission.toml` names the dataset's fingerprint (printed by `data check`), refuses a name that is
taken (a method, or another entry; `--replace` overwrites an entry of the same name), and writes one
MLflow parent run with `ratspain.source=predictions-only` plus one child per subject. The leaderboard
shows such entries in their own section, "predictions only, not reproduced", never ranked.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import pandas as pd

from .. import metrics
from ..data.dataset import sort_subjects
from ..errors import InputError
from ..evaluation import record as rec
from ..evaluation.identity import JobKey
from ..evaluation.predictions import read_predictions, score_frame
from .checks import FAIL, PASS, WARN, Report

SOURCE = "predictions-only"


def _few(items, n: int = 3) -> str:
    items = list(items)
    return ", ".join(map(str, items[:n])) + (f" and {len(items) - n} more" if len(items) > n else "")


def check(report: Report, path: Path, dataset) -> pd.DataFrame | None:
    """Format, every test image exactly once, known images and subjects; the harness's frame (with y_true) or None."""
    try:
        pf = read_predictions(path, truth=False)
    except InputError as e:
        report.add("predictions.format", FAIL, str(e), "write a header image,subject,y_pred[,score] and one row per test image; "
                                                       "y_pred 0 (no pain) or 1 (pain), score blank or a probability of pain in [0, 1]")
        return None
    frame = pf.table
    if len(pf.runs()) > 1:
        report.add("predictions.format", FAIL, f"{path}: holds {len(pf.runs())} (method, seed) runs", "submit one run per file")
        return None
    report.add("predictions.format", PASS, f"{len(frame)} rows")
    t = dataset.table
    ids = t["image"].astype(str).tolist()
    exact, base = set(ids), {}
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
    problems = [f"{len(unknown)} unknown image(s): {_few(unknown)}"] if unknown else []
    problems += [f"{len(dup)} image(s) listed more than once: {_few(dup)}"] if dup else []
    problems += [f"{len(missing)} of {len(exact)} test image(s) missing: {_few(missing)}"] if missing else []
    if problems:
        report.add("predictions.images", FAIL, "; ".join(problems),
                   f"write exactly one row per image of {dataset.name} ({len(exact)} images; ids as in the manifest's path column, e.g. {ids[0]!r})")
        return None
    note = f" ({by_name} matched by file name)" if by_name else ""
    report.add("predictions.images", PASS, f"every one of the {len(exact)} test images of {dataset.name} appears exactly once{note}")
    truth = t.set_index("image")
    subj = truth.loc[frame["image_id"], "subject"].astype(str).to_numpy()
    wrong = frame["subject"].astype(str).to_numpy() != subj
    if wrong.any():
        bad = frame[wrong]
        report.add("predictions.subjects", FAIL, f"{int(wrong.sum())} row(s) name another subject than the dataset, e.g. line "
                   f"{bad['line'].iloc[0]}: {bad['image'].iloc[0]} is not subject {bad['subject'].iloc[0]!r}",
                   "give each image its animal id from the dataset (the subject held out in the fold that predicted it)")
        return None
    report.add("predictions.subjects", PASS, f"subjects agree with the dataset ({t['subject'].nunique()} rats)")
    return pd.DataFrame({"image": frame["image_id"].to_numpy(), "subject": subj,
                         "y_true": truth.loc[frame["image_id"], "label"].astype(int).to_numpy(),
                         "y_pred": frame["y_pred"].astype(int).to_numpy(), "score": frame["score"].to_numpy(float), "fold": subj,
                         "_method": frame["method"].to_numpy(), "_seed": frame["seed"].to_numpy()})


def check_fingerprint(report: Report, meta: dict, dataset) -> bool:
    want = meta.get("dataset_fingerprint")
    if not want:
        report.add("dataset.fingerprint", FAIL, "submission.toml names no dataset_fingerprint: recording needs it",
                   f"add dataset_fingerprint = \"{dataset.fingerprint}\" if the predictions are for {dataset.name} "
                   "(`ratspain-bench data check --data D` prints a dataset's fingerprint)")
        return False
    if want != dataset.fingerprint:
        report.add("dataset.fingerprint", FAIL, f"the predictions are for dataset {want}, not {dataset.name} ({dataset.fingerprint})",
                   "pass --data with the dataset the predictions were made for")
        return False
    report.add("dataset.fingerprint", PASS, f"made for {dataset.name} ({dataset.fingerprint})")
    return True


def record(report: Report, frame: pd.DataFrame, dataset, name: str, meta: dict, runs_dir, tracking_uri=None,
           source_file: str = "", replace: bool = False, taken=()) -> str | None:
    """One parent run (role parent, source predictions-only, complete) and a child per subject; returns the run id."""
    seed = str(frame["_seed"].iloc[0] or meta.get("seed", 0))
    preds = frame.drop(columns=["_method", "_seed"]).assign(method=name, seed=seed)
    digest = hashlib.sha1(preds[["image", "y_pred", "score"]].to_csv(index=False).encode()).hexdigest()[:12]
    store = rec.Store(runs_dir, tracking_uri)
    key = JobKey(dataset.name, dataset.fingerprint, name, digest, "-", int(seed) if seed.lstrip("-").isdigit() else 0)
    exp = store.experiment(rec.EXPERIMENT_PREFIX + dataset.name)
    if name in taken:
        report.add("record", FAIL, f"name {name!r} is a registered method's", "record the entry under another name (--name)")
        return None
    entries = [r for r in store.find(exp, **{rec.Tag.ROLE: rec.PARENT, rec.Tag.METHOD: name, rec.Tag.FINGERPRINT: dataset.fingerprint})
               if r.data.tags.get(rec.Tag.STATUS) == rec.COMPLETE]
    same = [r for r in entries if r.data.tags.get(rec.Tag.CONFIG_HASH) == digest]
    if same:
        report.add("record", PASS, f"already recorded as MLflow run {same[0].info.run_id} (same predictions): nothing to do")
        return same[0].info.run_id
    if entries and not replace:
        report.add("record", FAIL, f"an entry named {name!r} is already recorded for {dataset.name} (MLflow run {entries[0].info.run_id})",
                   "pass --replace to overwrite it, or record under another name")
        return None
    for r in entries:
        store.log(r.info.run_id, tags={rec.Tag.STATUS: "replaced"})
    subjects = sort_subjects(preds["subject"].unique())
    s = score_frame(preds)
    parent = rec.ParentRun(key, SOURCE, "predictions", SOURCE, {}, len(subjects), str(meta.get("paper", "")), "n/a")
    _, pid, _ = rec.open_parent(store, parent)
    store.log(pid, params={"predictions_sha1": digest, "source_file": Path(source_file).name,
                           **{k: (", ".join(v) if isinstance(v, list) else v) for k, v in meta.items()
                              if k in ("authors", "contact", "paper", "licence", "license", "description", "version", "code")}})
    children: dict = {}
    for subj in subjects:
        g = preds[preds["subject"] == subj]
        rec.log_fold(store, exp, pid, children, subj, name, {**metrics.summary(metrics.confusion(g["y_true"], g["y_pred"])), "n_test": len(g)})
    with tempfile.TemporaryDirectory(prefix="ratspain-record-") as tmp:
        p, j = Path(tmp) / "predictions.csv", Path(tmp) / "score.json"
        preds.to_csv(p, index=False)
        j.write_text(json.dumps(s, indent=1))
        store.finish(pid, rec.COMPLETE, rec.parent_metrics(s, {"folds_complete": len(subjects)}),
                     {rec.Tag.HARDWARE: "n/a (predictions only)"}, files=[p, j])
    report.add("record", PASS, f"recorded as MLflow run {pid} in experiment {rec.EXPERIMENT_PREFIX}{dataset.name} (source {SOURCE}); "
                               "`ratspain-bench leaderboard` lists it under \"predictions only, not reproduced\"")
    return pid


def y_true_warning(report: Report, path: Path, frame: pd.DataFrame) -> None:
    """A y_true column is ignored; say so (without telling which rows differ from the dataset's labels)."""
    header = Path(path).read_text(encoding="utf-8-sig").splitlines()[:1]
    if header and "y_true" in [h.strip() for h in header[0].split(",")]:
        report.add("predictions.y_true", WARN, "the y_true column is ignored", "drop it; the harness scores against the dataset's labels")

