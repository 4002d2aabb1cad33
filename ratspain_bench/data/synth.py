"""The synthetic RatsPain replica: stylised rat faces labelled by simulated raters the paper's way.

Each image of a subject gets a target drawn without replacement from the subject's counts (default:
the paper's Table 2, plus 157 low-confidence images, Table 1): a high-confidence level 0/1/2, or
"low confidence". Per image, a latent continuous intensity in [0, 2] per AU (an integer score drawn
given a level, plus jitter and a per-rat resting-face offset) drives the drawing, and eight raters
grade a noisy view of it: rater bias and noise, and "uncertain" (no grade) more often for the
whiskers and for a turned head (section "Explanation of pain levels"). The two-stage rule of
`raters` turns the grades into accepted AUs, a level and a confidence; the latent state, head pose
and grades are drawn again until the outcome is the target (rejection sampling of numbers only; each
image is rendered once, after). Without rejection about 12% of images come out low-confidence and
about two thirds of the AUs are settled in stage one. Subjects differ in look, cage, camera and
head-pose distribution, none of which depends on the label.

Low-confidence images are spread over the subjects by largest remainder, proportionally to the
subjects' high-confidence totals (ties to the earlier subject); their latent level is drawn from
Table 1's high-confidence proportions.

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

from ..tasks import AUS, BLANK, round_half_up
from .croissant import write_card
from .rat_face import draw_face, look_for, site_look
from .raters import RATER_COLUMNS, STAGE_ONE, accepted_grades, image_confidence, image_level, settled_in_stage_one

PAPER_COUNTS: dict[str, dict[str, int]] = {  # RatsPain Table 2 (1,138 high-confidence images)
    "1": {"no_pain": 56, "moderate": 163, "severe": 2},
    "2": {"no_pain": 102, "moderate": 108, "severe": 0},
    "3": {"no_pain": 148, "moderate": 50, "severe": 0},
    "4": {"no_pain": 138, "moderate": 92, "severe": 0},
    "5": {"no_pain": 63, "moderate": 116, "severe": 3},
    "6": {"no_pain": 34, "moderate": 62, "severe": 1},
}
PAPER_LOW_CONFIDENCE = 157  # Table 1: images left unlabelled (1,295 in all)
REPLICA_VERSION = 3  # bump whenever the rendering or labelling changes, so caches keyed on it are refreshed
LEVEL_KEYS = ("no_pain", "moderate", "severe")
LOW = None  # the target of a low-confidence image
FRONTAL_MAX_YAW = 15.0  # |yaw| < 15 deg: frontal
MODERATE_MAX_YAW = 40.0  # 15 <= |yaw| < 40: moderate; otherwise extreme
FIELDS = ["path", "subject", "level", "label", "confidence", *(f"au_{a}" for a in AUS),
          "pose_yaw", "pose_pitch", "pose_roll", "pose_bin", *RATER_COLUMNS]

# Latent state: P(AU score = 0, 1, 2 | level), then intensity = score + per-rat offset + jitter.
AU_SCORE_PROBS = np.array([[0.80, 0.18, 0.02], [0.22, 0.60, 0.18], [0.03, 0.30, 0.67]])
AU_JITTER = 0.25  # sd of the continuous intensity around the integer score
LOW_LEVEL_PROBS = np.array([541, 591, 6]) / 1138  # latent level of a low-confidence image (Table 1)
# Raters 1..8: grade = round_half_up(intensity + bias + N(0, RATER_SD)) clipped to 0..2, or uncertain.
RATER_BIAS = np.array([0.05, -0.08, 0.0, 0.10, -0.04, 0.08, -0.06, 0.02])
RATER_SD = 0.25
UNCERTAIN = np.array([0.03, 0.04, 0.03, 0.12])  # P(no grade) per AU in `AUS` order, frontal head
UNCERTAIN_TURNED = 0.4  # added to it linearly from |yaw| = 15 deg (0) to 75 deg (all of it)


def pose_bin(yaw: float) -> str:
    a = abs(yaw)
    return "frontal" if a < FRONTAL_MAX_YAW else "moderate" if a < MODERATE_MAX_YAW else "extreme"


def _pose(look, rng: np.random.Generator) -> tuple[float, float, float]:
    yaw = rng.normal(0, look.yaw_sd)
    if rng.random() < look.yaw_turned:
        yaw = rng.choice([-1, 1]) * abs(rng.normal(look.yaw_turn, 12))
    yaw = _clip(yaw, 75)
    pitch = _clip(rng.normal(look.pitch_mu, look.pitch_sd), 35)
    roll = _clip(rng.normal(0, look.roll_sd), 35)
    return round(yaw, 1), round(pitch, 1), round(roll, 1)


def _clip(x: float, limit: float) -> float:
    return float(min(max(x, -limit), limit))


def rate(intensity: np.ndarray, yaw: float, rng: np.random.Generator) -> np.ndarray:
    """Grades (AUs, 8 raters) of one image; stage-two raters' grades are blank on AUs settled in stage one."""
    grades = round_half_up(intensity[:, None] + RATER_BIAS + rng.normal(0, RATER_SD, (len(AUS), len(RATER_BIAS)))).clip(0, 2)
    p_none = UNCERTAIN + UNCERTAIN_TURNED * min(max(abs(yaw) - FRONTAL_MAX_YAW, 0) / 60, 1)
    grades[rng.random(grades.shape) < p_none[:, None]] = BLANK
    for g in grades:
        if settled_in_stage_one(g):
            g[STAGE_ONE:] = BLANK
    return grades


def draw_rated(look, level: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple, np.ndarray]:
    """One draw, before any rejection: latent AU intensities given a level, head pose, rater grades."""
    scores = rng.choice(3, size=len(AUS), p=AU_SCORE_PROBS[level])
    intensity = (scores + np.asarray(look.au_offset) + rng.normal(0, AU_JITTER, len(AUS))).clip(0, 2)
    pose = _pose(look, rng)
    return intensity, pose, rate(intensity, pose[0], rng)


def sample_image(seed: int, subject_index: int, image_index: int, target, site: int | None = None) -> dict:
    """Per-image draws: latent AU intensities, pose and rater grades with the target outcome (a level of a
    high-confidence image, or `LOW`), the labels they give, camera settings, and the RNG (left where
    drawing continues). Everything comes from SeedSequence([seed, subject_index, image_index])."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, subject_index, image_index]))
    look = look_for(subject_index) if site is None else site_look(look_for(subject_index), site)
    while True:
        level = target if target is not LOW else rng.choice(3, p=LOW_LEVEL_PROBS)
        intensity, pose, grades = draw_rated(look, level, rng)
        accepted = accepted_grades(grades)
        confidence = image_confidence(accepted)
        if confidence == "low" if target is LOW else confidence == "high" and image_level(accepted) == target:
            break
    return {"rng": rng, "look": look, "intensity": dict(zip(AUS, intensity.tolist())), "pose": pose,
            "grades": grades, "accepted": accepted, "level": image_level(accepted), "confidence": confidence,
            "quality": int(rng.integers(*look.quality)), "blur": max(0.0, rng.normal(look.blur, 0.25)),
            "noise": max(0.5, rng.normal(look.noise, 1.5)), "light": look.light * rng.uniform(0.85, 1.1), "site": site}


def _cell(grade) -> int | str:
    return "" if grade == BLANK else int(grade)


def manifest_row(subject: str, image_index: int, p: dict) -> dict:
    """The manifest row of a sampled image: blank cells for no grade; a low-confidence image has no level and no
    label, as in the paper (Table 1: "N/A"), so the labelled rows are exactly Table 2 (the contract's counts)."""
    yaw, pitch, roll = p["pose"]
    level = p["level"] if p["confidence"] == "high" else BLANK
    site = {} if p.get("site") is None else {"site": site_name(p["site"])}
    return {**site, "path": f"images/{subject}/{subject}_{image_index:04d}.jpg", "subject": subject,
            "level": _cell(level), "label": "" if level == BLANK else int(level >= 1), "confidence": p["confidence"],
            **{f"au_{a}": _cell(g) for a, g in zip(AUS, p["accepted"])},
            "pose_yaw": yaw, "pose_pitch": pitch, "pose_roll": roll, "pose_bin": pose_bin(yaw),
            **{c: _cell(g) for c, g in zip(RATER_COLUMNS, p["grades"].T.ravel())}}


def site_name(site: int) -> str:
    return f"site{site + 1}"


def site_of(subject_index: int, sites: int | None) -> int | None:
    """The site a rat is recorded at: rats are shared round-robin among `sites` labs (None: no sites)."""
    return None if not sites else subject_index % sites


def render_one(job: tuple) -> tuple[dict, dict]:
    """Render image `image_index` of a subject into `root`; returns its manifest row and AU boxes."""
    root, seed, size, subject, subject_index, image_index, target, site = job
    p = sample_image(seed, subject_index, image_index, target, site)
    data, boxes = draw_face(p["look"], p["intensity"], p["pose"], p["rng"], size, p["quality"],
                            p["blur"] * size / 256, p["noise"], p["light"])
    row = manifest_row(subject, image_index, p)
    (Path(root) / row["path"]).write_bytes(data)
    return row, boxes


def low_confidence_counts(counts: dict, n: int) -> dict[str, int]:
    """n low-confidence images over the subjects: largest remainder, proportional to their totals."""
    weights = np.array([sum(int(v) for v in c.values()) for c in counts.values()], dtype=float)
    if not weights.sum():
        weights[:] = 1.0
    share = n * weights / weights.sum()
    out = np.floor(share).astype(int)
    for i in np.argsort(-(share - out), kind="stable")[: n - out.sum()]:
        out[i] += 1
    return dict(zip(counts, out.tolist()))


def plan(seed: int, counts: dict, low_confidence: int) -> list[tuple]:
    """(subject, subject_index, image_index, target) of every image, each subject's targets shuffled."""
    low = low_confidence_counts(counts, low_confidence)
    out = []
    for si, (subject, c) in enumerate(counts.items()):
        targets = [lv for lv, k in enumerate(LEVEL_KEYS) for _ in range(int(c.get(k, 0)))] + [LOW] * low[subject]
        order = np.random.default_rng(np.random.SeedSequence([seed, si], spawn_key=(1,))).permutation(len(targets))
        out += [(subject, si, i, targets[j]) for i, j in enumerate(order)]
    return out


def _counts(counts: dict | None, low_confidence: int | None) -> tuple[dict, int]:
    """Normalised counts (default `PAPER_COUNTS`) and the low-confidence count (default: 157 for the
    paper's counts, 0 for others)."""
    counts = {str(k): dict(v) for k, v in (PAPER_COUNTS if counts is None else counts).items()}
    if low_confidence is None:
        low_confidence = PAPER_LOW_CONFIDENCE if counts == PAPER_COUNTS else 0
    return counts, int(low_confidence)


def plan_rows(seed: int = 0, counts: dict | None = None, low_confidence: int | None = None, sites: int | None = None) -> list[dict]:
    """The manifest rows `generate_replica` would write, without drawing any image (seconds for 1,295)."""
    counts, low_confidence = _counts(counts, low_confidence)
    return [manifest_row(subject, i, sample_image(int(seed), si, i, target, site_of(si, sites)))
            for subject, si, i, target in plan(int(seed), counts, low_confidence)]


def _check(out_dir: Path, size: int, counts: dict, low_confidence: int) -> None:
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
    if low_confidence < 0 or (low_confidence and not counts):
        raise ValueError(f"low_confidence {low_confidence}: want a non-negative count (and at least one subject)")


def provenance(seed: int | None, size: int) -> dict:
    """The replica's `provenance.json`: synthetic, by which renderer, and whether anyone can recompute its labels
    (yes when its seed is known; `seed` None: a hidden replica, whose seed is in no file of the folder)."""
    out = {"synthetic": True, "generator": "ratspain_bench synthetic replica", "replica_version": REPLICA_VERSION, "size": size,
           "labels_public": seed is not None}
    return {**out, "seed": seed} if seed is not None else out


def generate_replica(out_dir, seed: int = 0, size: int = 256, counts: dict | None = None,
                     jobs: int | None = None, progress=None, low_confidence: int | None = None, hidden: bool = False,
                     sites: int | None = None) -> Path:
    """Render the replica into out_dir; returns the path of out_dir/manifest.csv.

    counts: {subject: {"no_pain": n0, "moderate": n1, "severe": n2}} high-confidence images (default
    `PAPER_COUNTS`); low_confidence: low-confidence images added (default 157 with the paper's counts, else 0).
    jobs: worker processes (default min(2, cpu count)); progress: optional callable(n_done, n_total).
    hidden: the seed is a secret (`provenance.json` then says the labels are not public and names no seed).
    sites: the rats shared round-robin among this many labs (`rat_face.SITES`: camera angle spread, lighting,
    background, white balance and JPEG quality per lab), with a `site` column; None (the default) renders the replica
    byte for byte as before sites existed.
    Renders into a temporary sibling folder and renames it into place, so out_dir is complete or absent.
    Raises ValueError if out_dir exists and is not empty.
    """
    out_dir = Path(out_dir)
    counts, low_confidence = _counts(counts, low_confidence)
    _check(out_dir, size, counts, low_confidence)
    if sites is not None and not 2 <= int(sites) <= len(counts):
        raise ValueError(f"sites {sites}: want 2 or more, and at most one per rat ({len(counts)} rats)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        for subject in counts:
            (tmp / "images" / subject).mkdir(parents=True)
        work = [(str(tmp), int(seed), int(size), *p, site_of(p[1], sites)) for p in plan(int(seed), counts, low_confidence)]
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
            w = csv.DictWriter(f, FIELDS + (["site"] if sites else []), lineterminator="\n")
            w.writeheader()
            w.writerows(row for row, _ in results)
        regions = {row["path"]: boxes for row, boxes in results}
        (tmp / "au_regions.json").write_text(json.dumps(regions, separators=(",", ":")) + "\n", encoding="utf-8")
        made = provenance(None if hidden else int(seed), int(size))
        (tmp / "provenance.json").write_text(json.dumps(made, indent=1) + "\n", encoding="utf-8")
        write_card(tmp, made, name=out_dir.name)
        os.chmod(tmp, 0o755)
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above); fails loudly if something appeared meanwhile
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir / "manifest.csv"
