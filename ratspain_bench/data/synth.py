"""The synthetic RatsPain replica: stylised rat faces whose pain level follows the Rat Grimace Scale.

Each image gets a level drawn without replacement from its subject's counts (default: the paper's
Table 2), four AU scores 0/1/2 sampled given that level (rejection sampling until the rounded mean
equals the level, the paper's labelling rule), then continuous AU intensities (score + rater-like
jitter + a per-rat resting-face offset) that drive the drawing. Subjects differ in look, cage,
camera and head-pose distribution, none of which depends on the label.

Determinism: every image uses `SeedSequence([seed, subject_index, image_index])` (subject_index is
the position of the subject in `counts`), so the output does not depend on the number of workers.
"""
from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .rat_face import AUS, draw_face, look_for

PAPER_COUNTS: dict[str, dict[str, int]] = {  # RatsPain Table 2 (1,138 high-confidence images)
    "1": {"no_pain": 56, "moderate": 163, "severe": 2},
    "2": {"no_pain": 102, "moderate": 108, "severe": 0},
    "3": {"no_pain": 148, "moderate": 50, "severe": 0},
    "4": {"no_pain": 138, "moderate": 92, "severe": 0},
    "5": {"no_pain": 63, "moderate": 116, "severe": 3},
    "6": {"no_pain": 34, "moderate": 62, "severe": 1},
}
REPLICA_VERSION = 1  # bump whenever the rendering changes, so caches keyed on it are refreshed
LEVEL_KEYS = ("no_pain", "moderate", "severe")
FRONTAL_MAX_YAW = 15.0  # |yaw| < 15 deg: frontal
MODERATE_MAX_YAW = 40.0  # 15 <= |yaw| < 40: moderate; otherwise extreme
FIELDS = ["path", "subject", "level", "label", "confidence", "au_orbital", "au_nose", "au_ears", "au_whiskers",
          "pose_yaw", "pose_pitch", "pose_roll", "pose_bin"]

# Rater model: P(AU score = 0, 1, 2 | image level), before the rounded-mean constraint.
AU_SCORE_PROBS = np.array([[0.80, 0.18, 0.02], [0.22, 0.60, 0.18], [0.03, 0.30, 0.67]])
AU_JITTER = 0.25  # sd of the continuous intensity around the integer score (rater disagreement)


def round_half_up(x: float) -> int:
    """Rounded mean as the paper's label: 0.5 -> 1 and 1.5 -> 2 (never banker's rounding)."""
    return int(np.floor(x + 0.5 + 1e-9))


def pose_bin(yaw: float) -> str:
    a = abs(yaw)
    return "frontal" if a < FRONTAL_MAX_YAW else "moderate" if a < MODERATE_MAX_YAW else "extreme"


def sample_au_scores(level: int, rng: np.random.Generator) -> list[int]:
    """Four AU scores whose rounded-half-up mean is `level`."""
    while True:
        s = rng.choice(3, size=4, p=AU_SCORE_PROBS[level])
        if round_half_up(s.mean()) == level:
            return [int(v) for v in s]


def _pose(look, rng: np.random.Generator) -> tuple[float, float, float]:
    yaw = rng.normal(0, look.yaw_sd)
    if rng.random() < look.yaw_turned:
        yaw = rng.choice([-1, 1]) * abs(rng.normal(look.yaw_turn, 12))
    yaw = float(np.clip(yaw, -75, 75))
    pitch = float(np.clip(rng.normal(look.pitch_mu, look.pitch_sd), -35, 35))
    roll = float(np.clip(rng.normal(0, look.roll_sd), -35, 35))
    return round(yaw, 1), round(pitch, 1), round(roll, 1)


def sample_image(seed: int, subject_index: int, image_index: int, level: int) -> dict:
    """Per-image draws: AU scores, continuous AU intensities, pose and camera settings, plus the RNG
    (left where drawing continues). Everything comes from SeedSequence([seed, subject_index, image_index])."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, subject_index, image_index]))
    look = look_for(subject_index)
    scores = sample_au_scores(level, rng)
    intensity = {k: float(np.clip(s + off + rng.normal(0, AU_JITTER), 0, 2))
                 for k, s, off in zip(AUS, scores, look.au_offset)}
    return {"rng": rng, "look": look, "scores": scores, "intensity": intensity, "pose": _pose(look, rng),
            "quality": int(rng.integers(55, 93)), "blur": max(0.0, rng.normal(look.blur, 0.25)),
            "noise": max(0.5, rng.normal(look.noise, 1.5)), "light": look.light * rng.uniform(0.85, 1.1)}


def render_one(job: tuple) -> tuple[dict, dict]:
    """Render image `image_index` of a subject into `root`; returns its manifest row and AU boxes."""
    root, seed, size, subject, subject_index, image_index, level = job
    p = sample_image(seed, subject_index, image_index, level)
    data, boxes = draw_face(p["look"], p["intensity"], p["pose"], p["rng"], size, p["quality"],
                            p["blur"] * size / 256, p["noise"], p["light"])
    rel = f"images/{subject}/{subject}_{image_index:04d}.jpg"
    (Path(root) / rel).write_bytes(data)
    yaw, pitch, roll = p["pose"]
    row = {"path": rel, "subject": subject, "level": level, "label": int(level >= 1), "confidence": "high",
           **{f"au_{k}": s for k, s in zip(AUS, p["scores"])},
           "pose_yaw": yaw, "pose_pitch": pitch, "pose_roll": roll, "pose_bin": pose_bin(yaw)}
    return row, boxes


def _jobs(root: Path, seed: int, size: int, counts: dict) -> list[tuple]:
    jobs = []
    for si, (subject, c) in enumerate(counts.items()):
        levels = np.repeat([0, 1, 2], [int(c.get(k, 0)) for k in LEVEL_KEYS])
        np.random.default_rng(np.random.SeedSequence([seed, si], spawn_key=(1,))).shuffle(levels)
        (root / "images" / subject).mkdir(parents=True, exist_ok=True)
        jobs += [(str(root), seed, size, subject, si, i, int(lv)) for i, lv in enumerate(levels)]
    return jobs


def _check(out_dir: Path, size: int, counts: dict) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ValueError(f"{out_dir}: exists and is not empty; refusing to overwrite")
    if size < 32:
        raise ValueError(f"size {size}: must be at least 32 pixels")
    for subject, c in counts.items():
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", str(subject)):
            raise ValueError(f"subject id {subject!r}: use letters, digits, '_', '.', '-'")
        bad = set(c) - set(LEVEL_KEYS)
        if bad or any(int(c.get(k, 0)) < 0 for k in LEVEL_KEYS):
            raise ValueError(f"counts for subject {subject!r}: want non-negative {', '.join(LEVEL_KEYS)}")


def generate_replica(out_dir, seed: int = 0, size: int = 256, counts: dict | None = None,
                     jobs: int | None = None, progress=None) -> Path:
    """Render the replica into out_dir; returns the path of out_dir/manifest.csv.

    counts: {subject: {"no_pain": n0, "moderate": n1, "severe": n2}} (default `PAPER_COUNTS`).
    jobs: worker processes (default min(2, cpu count)); progress: optional callable(n_done, n_total).
    Renders into a temporary sibling folder and renames it into place, so out_dir is complete or absent.
    Raises ValueError if out_dir exists and is not empty.
    """
    out_dir = Path(out_dir)
    counts = {str(k): dict(v) for k, v in (PAPER_COUNTS if counts is None else counts).items()}
    _check(out_dir, size, counts)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        work = _jobs(tmp, int(seed), int(size), counts)
        n_jobs = max(1, min(jobs or min(2, os.cpu_count() or 1), len(work) or 1))
        results = []
        if n_jobs == 1:
            for job in work:
                results.append(render_one(job))
                if progress:
                    progress(len(results), len(work))
        else:
            with mp.get_context("spawn").Pool(n_jobs) as pool:  # spawn: safe even if the caller has threads
                for r in pool.imap(render_one, work, chunksize=8):
                    results.append(r)
                    if progress:
                        progress(len(results), len(work))
        with open(tmp / "manifest.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, FIELDS, lineterminator="\n")
            w.writeheader()
            w.writerows(row for row, _ in results)
        regions = {row["path"]: boxes for row, boxes in results}
        (tmp / "au_regions.json").write_text(json.dumps(regions, separators=(",", ":")) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above); fails loudly if something appeared meanwhile
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir / "manifest.csv"
