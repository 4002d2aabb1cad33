"""Frame scores joined to the frames manifest and summarised per animal and session.

`scores` is what a trained model's `predict` returns (`image,pain_probability,pain`, `au_<name>` for an
action-unit model, `error`); `predict` of a manifest names each image by the manifest's `path` value, so
that is the join key (an image named by its file path, as when a folder was scored, is matched too).

`quality.csv`, which `frames` writes beside the manifest, has one row per candidate frame it examined (every
`frames.PROBE_S` s of video), scorable or not and why (`read_quality`): the share of a group's candidates that
were scorable is `scorable_share` in its summary row.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError, where
from ..tasks import AUS, rgs_score

AU_SCORES = tuple(f"au_{a}" for a in AUS)
SCORE_COLUMNS = ("pain_probability", "pain", *AU_SCORES, "error", "warning")
BOX = ("box_x", "box_y", "box_w", "box_h")
# per frame (`frames`' manifest: where the face was, its pose, the quality gate's verdict): never carried into a group's row
FRAME_COLUMNS = ("path", "time_s", "sharpness", *BOX, "pose_yaw", "pose_roll", "pose_bin", "scorable", "reason")
QUALITY = "quality.csv"  # beside the manifest
QUALITY_COLUMNS = ("video", "frame", "scorable", "reason", *BOX, "file")  # those read here
# "High grimace" when the frame's score is above: P(pain) 0.5, the models' own call (`pain` is p > 0.5); RGS (the
# mean AU grade, 0-2) 0.67, the analgesic intervention score of Oliver et al. 2014 (PLoS One 9:e97882: RGS > 0.67,
# from an ROC analysis of expert-scored images, sensitivity 85%, specificity 89%).
HIGH = {"pain_probability": 0.5, "rgs": 0.67}


def read_manifest(manifest) -> tuple[pd.DataFrame, Path]:
    """A frames manifest (a CSV path or a DataFrame) as strings (blank cells stay ''), `time_s` and `sharpness`
    numeric; and the folder its paths are relative to (a DataFrame's: the working directory)."""
    if isinstance(manifest, pd.DataFrame):
        table, root = manifest.copy(), Path.cwd()
    else:
        path = Path(manifest)
        if not path.is_file():
            raise InputError(f"{path}: no such manifest")
        table, root = pd.read_csv(path, dtype=str, keep_default_na=False), path.parent
    if "path" not in table.columns:
        raise InputError(f"{manifest if not isinstance(manifest, pd.DataFrame) else 'the manifest'}: needs a `path` column")
    for col in ("time_s", "sharpness"):
        if col in table.columns:
            table[col] = pd.to_numeric(table[col], errors="coerce")
    return table, root


def read_quality(manifest, required: bool = False) -> pd.DataFrame | None:
    """`quality.csv` beside a manifest CSV (`frames` writes it: one row per candidate frame), None where there is
    none or the manifest is a DataFrame (InputError instead when `required`). Checked, InputError naming the file
    and row: the columns used here (`QUALITY_COLUMNS`), `scorable` true or false (any case), `frame` a whole
    number >= 0, the face box four numbers or four blanks (no face found). Returned with `scorable` bool, `frame`
    int, the box float (NaN: no face), the other columns strings; `attrs["file"]` is its path."""
    path = None if isinstance(manifest, pd.DataFrame) else Path(manifest).parent / QUALITY
    if path is None or not path.is_file():
        if required:
            raise InputError(f"{path or 'a DataFrame manifest'}: no such file (the frames' quality report); "
                             "run frames again to write it")
        return None
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in QUALITY_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"{where(path, 1)}: missing column(s) {', '.join(missing)} (want what frames writes)")
    scorable = table["scorable"].str.strip().str.lower()  # true/false, in any case (pandas writes True)
    frame = pd.to_numeric(table["frame"], errors="coerce")
    box = table[list(BOX)].apply(pd.to_numeric, errors="coerce")
    blank = table[list(BOX)].apply(lambda c: c.str.strip().eq(""))
    checks = [(~scorable.isin(["true", "false"]), "scorable is not true or false"),
              (~((frame >= 0) & (frame % 1 == 0)), "frame is not a whole number >= 0"),
              ((box.isna() & ~blank).any(axis=1) | (blank.any(axis=1) & ~blank.all(axis=1)),
               "want four box numbers (box_x,box_y,box_w,box_h) or four blanks")]
    bad = [(int(np.flatnonzero(mask)[0]), why) for mask, why in checks if mask.any()]
    if bad:
        n, why = min(bad)
        raise InputError(f"{where(path, n + 2)}: {why}")
    table["scorable"] = scorable.eq("true")
    table["frame"] = frame.astype(int)
    table[list(BOX)] = box
    table.attrs["file"] = str(path)
    return table


def high_threshold(high, score: str) -> float:
    """The score above which a frame is in high grimace: `high`, default `HIGH[score]`; `score` is `pain_probability`
    or `rgs`. InputError when `high` lies outside the score's range (0-1, 0-2)."""
    if high is None:
        return HIGH[score]
    top = 2.0 if score == "rgs" else 1.0
    if not 0 <= float(high) <= top:
        raise InputError(f"high threshold {high}: {'RGS' if score == 'rgs' else 'P(pain)'} lies between 0 and {top:g}")
    return float(high)


def join(scores, manifest) -> pd.DataFrame:
    """The manifest's rows that were scored, with the score columns (`pain_probability`, `pain`, `au_<name>`,
    `error`, `warning`) and `rgs` (the mean AU grade, for an action-unit model), in manifest order. `scores`: a DataFrame or
    a CSV path. InputError for a scored image the manifest does not list."""
    table, root = read_manifest(manifest)
    scores = pd.read_csv(scores, keep_default_na=False, na_values=[""]) if not isinstance(scores, pd.DataFrame) else scores
    missing = [c for c in ("image", "pain_probability") if c not in scores.columns]
    if missing:
        raise InputError(f"scores: missing column(s) {', '.join(missing)} (want what a model's predict returns)")
    by_value = {p: i for i, p in enumerate(table["path"])}
    by_file = None  # {real path: row}, built only when an image is not named by its manifest value
    rows = []
    for n, image in enumerate(scores["image"].astype(str)):
        i = by_value.get(image)
        if i is None:
            by_file = by_file or {os.path.realpath(root / p): i for i, p in enumerate(table["path"])}
            i = by_file.get(os.path.realpath(image))
        if i is None:
            raise InputError(f"scores row {n + 1}: image {image} is not in the manifest")
        rows.append(i)
    if len(set(rows)) < len(rows):
        raise InputError("scores: an image is scored twice")
    order = np.argsort(rows, kind="stable")
    out = table.iloc[np.asarray(rows)[order]].reset_index(drop=True)
    scored = scores.iloc[order].reset_index(drop=True)
    for col in SCORE_COLUMNS:
        if col in scored.columns:
            out[col] = scored[col].to_numpy()
    out["error"] = out["error"].astype(object).fillna("").astype(str) if "error" in out.columns else ""
    out["pain_probability"] = pd.to_numeric(out["pain_probability"], errors="coerce")
    if "pain" in out.columns:
        out["pain"] = pd.to_numeric(out["pain"], errors="coerce")
    aus = [c for c in AU_SCORES if c in out.columns]
    if aus:
        out[aus] = out[aus].apply(pd.to_numeric, errors="coerce")
        out["rgs"] = rgs_score(out[aus].to_numpy(dtype=float))
    return out


def bootstrap_mean_ci(values, n_boot: int = 2000, seed=0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (resampled with replacement, `n_boot` times)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return (float(x[0]), float(x[0])) if len(x) else (np.nan, np.nan)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for s in range(0, n_boot, 256):  # bounded memory for long videos
        e = min(n_boot, s + 256)
        means[s:e] = x[rng.integers(0, len(x), (e - s, len(x)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def summarise(scores, manifest, by=("subject", "session"), n_boot: int = 2000, seed: int = 0, level: float = 0.95,
              high: float | None = None, quality: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per group of `by` (sorted): the `by` columns, the manifest's other columns that are constant within
    every group (e.g. `group`), `frames` (scored), `unscored` (rows with an error), `mean_pain_prob` with its
    percentile bootstrap interval over frames (`mean_pain_prob_ci_low`, `_ci_high`; `n_boot` resamples, group i
    seeded `SeedSequence([seed, i])`), `pain_share` (share of frames called pain) and, for an action-unit model,
    `mean_rgs` (mean over frames of the mean of the four AU grades) and `mean_au_<name>` per AU; then
    `scorable_share`: the share of the group's candidate frames in `quality` (`read_quality`; rows grouped by the
    same `by` columns) that were scorable, NaN without one; `high_share`: the share of its scored frames whose score
    (P(pain); the RGS for an action-unit model) is above `high_threshold` (`high`, default `HIGH`). Frames are
    sampled evenly in time (one per slot of `frames`), so this share of frames is the share of the scored time spent
    in high grimace, as PainFace reports it.
    manifest None: `scores` is already the output of `join`; else `quality` defaults to the manifest's `quality.csv`."""
    joined = scores if manifest is None else join(scores, manifest)
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in by if c not in joined.columns]
    if missing:
        raise InputError(f"summarise by {', '.join(missing)}: not a manifest column ({', '.join(joined.columns)})")
    if n_boot < 1:
        raise InputError(f"n_boot {n_boot}: must be at least 1")
    if quality is None and manifest is not None:
        quality = read_quality(manifest)
    share = None
    if quality is not None:
        missing = [c for c in by if c not in quality.columns]
        if missing:
            raise InputError(f"{quality.attrs.get('file', QUALITY)}: no column {', '.join(missing)} to group its frames by")
        share = quality.groupby(by, sort=False)["scorable"].mean()
    ok = joined["error"].eq("") & joined["pain_probability"].notna()
    aus = [c for c in AU_SCORES if c in joined.columns]
    score = "rgs" if aus else "pain_probability"
    threshold = high_threshold(high, score)
    groups = joined.groupby(by, sort=True, dropna=False)
    others = [c for c in joined.columns if c not in (*by, *FRAME_COLUMNS, *SCORE_COLUMNS, "rgs")]
    carried = [c for c in others if (groups[c].nunique(dropna=False) <= 1).all()]
    rows = []
    for i, (key, g) in enumerate(groups):
        key = key if isinstance(key, tuple) else (key,)
        good = g[ok.loc[g.index]]
        p = good["pain_probability"].to_numpy(dtype=float)
        lo, hi = bootstrap_mean_ci(p, n_boot, np.random.SeedSequence([seed, i]), level)
        row = {**dict(zip(by, key)), **{c: g[c].iloc[0] for c in carried}, "frames": len(good), "unscored": len(g) - len(good),
               "mean_pain_prob": p.mean() if len(p) else np.nan, "mean_pain_prob_ci_low": lo, "mean_pain_prob_ci_high": hi}
        if "pain" in good.columns:
            row["pain_share"] = good["pain"].astype(float).mean() if len(good) else np.nan
        if aus:
            row["mean_rgs"] = good["rgs"].mean()
            row.update({f"mean_{c}": good[c].astype(float).mean() for c in aus})
        values = good[score].dropna()
        row.update(scorable_share=np.nan if share is None else share.get(key if len(by) > 1 else key[0], np.nan),
                   high_share=(values > threshold).mean() if len(values) else np.nan, high_threshold=threshold)
        rows.append(row)
    return pd.DataFrame(rows)

