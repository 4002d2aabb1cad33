"""The LORO evidence behind a trained model: the complete MLflow parent run of the same dataset
fingerprint, config hash, code hash and seed (any method name with that config), read back and summarised:
pooled F1/accuracy with the bootstrap-over-rats interval (whole animals resampled, as the leaderboard
does), per rat, per pose bin, and the calibration of its held-out probabilities (Brier score, reliability
bins). No matching run, no evidence: the card says so and how to get it (`train --evaluate` or `run`).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..board.stats import Interval, bootstrap_over_subjects
from ..evaluation.predictions import score_frame
from ..evaluation.identity import task_fingerprint
from ..evaluation.record import COMPLETE, EXPERIMENT_PREFIX, PARENT, Store, Tag, local_store_path, tracking_uri

RESAMPLES = 2000  # as the leaderboard
BINS = 10


@dataclass(frozen=True)
class Evidence:
    run_id: str
    uri: str
    method: str
    score: dict  # the contract's score object of the run's predictions
    interval: dict[str, Interval]  # pooled_f1, pooled_accuracy, mean_f1, mean_accuracy
    pose: dict[str, dict]  # pose bin -> {f1, accuracy, n}
    brier: float | None  # None when the predictions carry no probabilities
    reliability: pd.DataFrame  # bin, low, high, n, mean_probability, pain_rate


def reliability(y: np.ndarray, p: np.ndarray, bins: int = BINS) -> pd.DataFrame:
    """Equal-width probability bins: how many images, their mean predicted probability and observed pain rate."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        m = which == b
        rows.append({"bin": b, "low": edges[b], "high": edges[b + 1], "n": int(m.sum()),
                     "mean_probability": float(p[m].mean()) if m.any() else np.nan,
                     "pain_rate": float(y[m].mean()) if m.any() else np.nan})
    return pd.DataFrame(rows)


def summarise(run, uri: str, preds: pd.DataFrame) -> Evidence:
    score = score_frame(preds)
    per = score["per_subject"]
    cms = np.array([[per[s][k] for k in ("tp", "fp", "fn", "tn")] for s in per], dtype=float)
    pose = {}
    for name, value in run.data.metrics.items():
        if name.startswith("pose_") and name.rsplit("_", 1)[-1] in ("f1", "accuracy", "n"):
            b, stat = name[len("pose_"):].rsplit("_", 1)
            pose.setdefault(b, {})[stat] = value
    y = preds["y_true"].to_numpy(dtype=float)
    p = preds["score"].to_numpy(dtype=float) if "score" in preds.columns and preds["score"].notna().all() else None
    return Evidence(run.info.run_id, uri, run.data.tags.get(Tag.METHOD, "?"), score,
                    bootstrap_over_subjects(cms, RESAMPLES, seed=0), pose,
                    None if p is None else float(np.mean((p - y) ** 2)),
                    reliability(y, p) if p is not None else pd.DataFrame())


def find(dataset, method: str, config_hash: str, code_hash: str, seed: int, runs_dir, uri: str | None,
         task: str = "binary") -> tuple[Evidence | None, str]:
    """(evidence, "") or (None, why there is none). In the au task, the au run's (its binary cells: the derived label)."""
    uri = tracking_uri(runs_dir, uri)
    path = local_store_path(uri)
    if path is not None and not path.exists():
        return None, f"no MLflow store at {path}"
    store = Store(runs_dir, uri)
    exp = store.client.get_experiment_by_name(EXPERIMENT_PREFIX + dataset.name)
    if exp is None:
        return None, f"no LORO run of dataset {dataset.name!r} in {uri}"
    fingerprint = task_fingerprint(dataset, task)
    runs = store.find(exp.experiment_id, **{Tag.ROLE: PARENT, Tag.FINGERPRINT: fingerprint, Tag.CONFIG_HASH: config_hash,
                                            Tag.CODE_HASH: code_hash, Tag.SEED: str(seed), Tag.STATUS: COMPLETE})
    if not runs:
        return None, (f"no complete LORO run{'' if task == 'binary' else f' of the {task} task'} in {uri} with this dataset "
                      f"({fingerprint}), config ({config_hash}), code ({code_hash}) and seed ({seed})")
    run = sorted(runs, key=lambda r: (r.data.tags.get(Tag.METHOD) != method, -r.info.start_time))[0]
    with tempfile.TemporaryDirectory(prefix="ratspain-evidence-") as tmp:
        try:
            local = store.client.download_artifacts(run.info.run_id, "predictions.csv", tmp)
        except Exception as e:
            return None, f"run {run.info.run_id} matches but its predictions.csv cannot be read ({type(e).__name__})"
        preds = pd.read_csv(Path(local), dtype={"image": str, "subject": str, "fold": str})
    return summarise(run, uri, preds), ""
