"""`data check`: every structural problem `read_dataset` finds, plus image checks.

Image checks (skipped, with an `info` note, for a labels-only dataset):

- readability: each image is opened with PIL and fully decoded with
  `ImageFile.LOAD_TRUNCATED_IMAGES = False`, so a file that is not an image, or a JPEG/PNG cut short,
  is an error naming its row.
- leakage: the same or a near-identical image under two different subjects would sit in the training
  set of one LORO fold and the test set of another. Each image gets two 64-bit perceptual hashes of
  its grey-level thumbnail: a dHash (signs of the 8x8 horizontal gradients of a 9x8 thumbnail) and a
  pHash (signs, against their median, of the 8x8 lowest DCT coefficients of a 32x32 thumbnail). A pair
  is near-identical when the two Hamming distances summed are at most `HASH_THRESHOLD` (8 of 128 bits).
  Re-encoding (JPEG quality 30), resizing and mild blur stay within 6; on the default replica the
  closest pair of distinct images under different subjects is 13 apart. Each pair is reported once, at
  the later row, naming the earlier one; after `MAX_PAIRS_LISTED` pairs the rest are counted in one line.

Labelling rule (warnings: real data may disagree with it): where a row has rater columns for an AU,
its `au_<name>` must be what the paper's two-stage rule gives from those grades (`raters.consensus`),
and where a row has AU or rater grades, its `level` must be the rounded mean of the accepted AUs
(the `au_` columns, or the raters' consensus where the manifest has no `au_` column).

Only the rows that would be used are checked (low-confidence rows are excluded unless
`include_low_confidence`); rows whose file is missing are already reported by `read_dataset`.
"""
from __future__ import annotations

import csv
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFile

from ..tasks import AUS, BLANK, au_column
from .dataset import Dataset, Problem, read_dataset
from .raters import consensus, image_level, rater_columns

HASH_THRESHOLD = 8  # summed dHash + pHash Hamming distance (of 128 bits) at or below which two images are near-identical
MAX_PAIRS_LISTED = 100  # near-duplicate pairs listed one per line; beyond that, one summary line

_DCT_N = 32
_k = np.arange(_DCT_N)
_DCT = np.cos(np.pi * (2 * _k[None, :] + 1) * _k[:, None] / (2 * _DCT_N))  # DCT-II basis (unnormalised)


def perceptual_hashes(im: Image.Image) -> tuple[int, int]:
    """(dHash, pHash) of an image, each a 64-bit unsigned int."""
    g = im.convert("L")
    d = np.asarray(g.resize((9, 8), Image.LANCZOS), dtype=np.int16)
    dbits = (d[:, 1:] > d[:, :-1]).ravel()
    p = np.asarray(g.resize((_DCT_N, _DCT_N), Image.LANCZOS), dtype=np.float64)
    c = (_DCT @ p @ _DCT.T)[:8, :8].ravel()
    pbits = c > np.median(c[1:])  # DC term excluded from the median, as in the usual pHash
    return _pack(dbits), _pack(pbits)


def _pack(bits: np.ndarray) -> int:
    return int(np.packbits(bits.astype(np.uint8)).view(">u8")[0])


def _inspect(path: str) -> tuple[tuple[int, int] | None, str | None]:
    """Fully decode one image; its hashes, or an error text."""
    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft("L", (64, 64))  # DCT-domain downscale: still reads every byte of the file
            im.load()
            return perceptual_hashes(im), None
    except Exception as e:  # noqa: BLE001 - any decoder failure is a finding about the file, not a crash
        text = str(e) or type(e).__name__
        if "truncated" in text.lower():
            return None, f"truncated image: {text}"
        return None, f"unreadable image: {text}"


def image_problems(table, jobs: int | None = None) -> tuple[list[Problem], np.ndarray, np.ndarray, np.ndarray]:
    """Decode every existing image of `table`; problems plus (row indices, dHashes, pHashes) of the readable ones."""
    files = table["file"].tolist()
    present = [i for i, f in enumerate(files) if os.path.isfile(f)]
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with ThreadPoolExecutor(jobs or min(4, max(2, os.cpu_count() or 1))) as pool:
            results = list(pool.map(_inspect, (files[i] for i in present)))
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old
    problems, rows, dh, ph = [], [], [], []
    wheres, images = table["where"].tolist(), table["image"].tolist()
    for i, (hashes, err) in zip(present, results):
        if err:
            problems.append(Problem("error", wheres[i], f"{err} ({images[i]})"))
        else:
            rows.append(i)
            dh.append(hashes[0])
            ph.append(hashes[1])
    return problems, np.asarray(rows, np.int64), np.asarray(dh, np.uint64), np.asarray(ph, np.uint64)


_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], np.int16)


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (numpy >= 2 has bitwise_count; a byte table otherwise)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int16)
    x = np.ascontiguousarray(x)
    return _BYTE_BITS[x.view(np.uint8)].reshape(*x.shape, 8).sum(-1, dtype=np.int16)


def near_duplicate_pairs(dhash, phash, groups, threshold: int = HASH_THRESHOLD, block: int = 512):
    """(i, j, distance) for i < j with groups[i] != groups[j] and summed Hamming distance <= threshold."""
    dhash, phash, groups = np.asarray(dhash, np.uint64), np.asarray(phash, np.uint64), np.asarray(groups)
    out = []
    n = len(dhash)
    for s in range(0, n, block):
        e = min(n, s + block)
        dist = _popcount(dhash[s:e, None] ^ dhash[None, s:]) + _popcount(phash[s:e, None] ^ phash[None, s:])
        hit = (dist <= threshold) & (groups[s:e, None] != groups[None, s:])
        hit &= np.arange(s, e)[:, None] < np.arange(s, n)[None, :]
        for a, b in zip(*np.nonzero(hit)):
            out.append((s + int(a), s + int(b), int(dist[a, b])))
    out.sort()
    return out


def leakage_problems(table, rows, dhash, phash, threshold: int = HASH_THRESHOLD) -> list[Problem]:
    subjects = table["subject"].to_numpy()[rows] if len(rows) else np.array([], dtype=object)
    pairs = near_duplicate_pairs(dhash, phash, subjects, threshold)
    wheres, images, files = table["where"].tolist(), table["image"].tolist(), table["file"].tolist()
    pairs = [(a, b, d) for a, b, d in pairs if files[rows[a]] != files[rows[b]]]  # one file twice: a duplicate path
    problems = []
    for a, b, dist in pairs[:MAX_PAIRS_LISTED]:
        i, j = int(rows[a]), int(rows[b])
        kind = "same image" if dist == 0 else "near-identical image"
        problems.append(Problem(
            "error", wheres[j],
            f"{kind} under two subjects: {images[j]} (subject {subjects[b]}) and {images[i]} (subject {subjects[a]}) "
            f"at {wheres[i]}; leaks between LORO folds (perceptual-hash distance {dist}, threshold {threshold})"))
    if len(pairs) > MAX_PAIRS_LISTED:
        problems.append(Problem("error", wheres[int(rows[pairs[MAX_PAIRS_LISTED][1]])],
                                f"... and {len(pairs) - MAX_PAIRS_LISTED} more cross-subject near-duplicate pairs not listed"))
    return problems


def _grade(value) -> int:
    return BLANK if value is None or pd.isna(value) else int(value)


def _show(grade: int) -> str:
    return "blank" if grade == BLANK else str(grade)


def rule_problems(table) -> list[Problem]:
    """Warnings where a row's AU grades or level disagree with the two-stage labelling rule."""
    raters = rater_columns(table.columns)
    aus = [a for a in AUS if au_column(a) in table]
    if not aus and not raters:
        return []
    problems = []
    for row in table.to_dict("records"):
        accepted = []
        for a in AUS:
            given = _grade(row[au_column(a)]) if a in aus else None
            grades = [_grade(row[cols[a]]) if a in cols else BLANK for cols in raters.values()]
            rule = consensus(grades) if any(g != BLANK for g in grades) else None
            if given is not None and rule is not None and given != rule:
                problems.append(Problem("warning", row["where"], f"{au_column(a)} {_show(given)} contradicts its raters "
                                        f"(the two-stage rule gives {_show(rule)})"))
            accepted.append(given if given is not None else BLANK if rule is None else rule)
        level = _grade(row["level"])
        if level != BLANK and any(g != BLANK for g in accepted) and image_level(accepted) != level:
            grades = ", ".join(f"{a} {_show(g)}" for a, g in zip(AUS, accepted))
            problems.append(Problem("warning", row["where"], f"level {level} is not {image_level(accepted)}, the rounded "
                                    f"mean of the accepted AU grades ({grades})"))
    return problems


def card_problems(folder: Path) -> list[Problem]:
    """Problems with a folder's `croissant.json` (none when it has none): it must load with mlcroissant without errors,
    describe exactly the manifest's columns, and carry the manifest's current sha256."""
    from .croissant import CARD

    path = Path(folder) / CARD
    if not path.is_file():
        return []
    try:
        import mlcroissant as mlc
    except ImportError:
        return [Problem("warning", str(path), "not validated: mlcroissant is not installed (pip install mlcroissant)")]
    try:
        meta = mlc.Metadata.from_file(ctx=mlc.Context(), file=path)
    except Exception as e:  # noqa: BLE001 - mlcroissant raises ValidationError and plain errors alike
        first = str(e).strip().splitlines()
        return [Problem("error", str(path), f"not a valid Croissant file: {first[-1] if first else type(e).__name__}")]
    problems = [Problem("error", str(path), f"Croissant: {e}") for e in sorted(meta.ctx.issues.errors)]
    manifest = Path(folder) / "manifest.csv"
    if manifest.is_file():
        with open(manifest, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
        described = [f.name for rs in meta.record_sets for f in rs.fields]
        if sorted(described) != sorted(header):
            problems.append(Problem("error", str(path), f"its fields ({len(described)}) are not the manifest's columns ({len(header)})"))
        sha = next((d.sha256 for d in meta.distribution if getattr(d, "content_url", None) == "manifest.csv"), None)
        if sha and sha != hashlib.sha256(manifest.read_bytes()).hexdigest():
            problems.append(Problem("warning", str(path), "manifest.csv changed since the card was written (sha256 differs)"))
    return problems


def check_dataset(data=None, include_low_confidence: bool = False, threshold: int = HASH_THRESHOLD,
                  jobs: int | None = None) -> list[Problem]:
    """Every problem of a dataset, in order: structure (read_dataset), labelling rule, its Croissant card when it has one,
    image decoding, cross-subject leakage.

    Severities: `error` (not usable), `warning` (usable, worth knowing), `info` (a note, e.g. skipped checks).
    Raises `InputError` only when `data` names nothing readable at all.
    """
    return inspect_dataset(data, include_low_confidence, threshold, jobs)[1]


def inspect_dataset(data=None, include_low_confidence: bool = False, threshold: int = HASH_THRESHOLD,
                    jobs: int | None = None) -> tuple[Dataset, list[Problem]]:
    """`check_dataset`, also returning the dataset read (for the summary line of `data check`)."""
    ds, problems = read_dataset(data, include_low_confidence)
    problems += rule_problems(ds.table)
    source = Path(ds.source)
    problems += card_problems(source.parent if source.suffix.lower() == ".csv" else source)  # a dataset card beside it
    if not ds.has_images:
        problems.append(Problem("info", ds.source, "labels only: no image files found beside it; "
                                "image checks (unreadable or truncated images, cross-subject duplicates) skipped"))
        return ds, problems
    if not len(ds.table):
        return ds, problems
    img_problems, rows, dh, ph = image_problems(ds.table, jobs)
    problems += img_problems
    problems += leakage_problems(ds.table, rows, dh, ph, threshold)
    return ds, problems


def summarize(problems: list[Problem]) -> dict:
    """Counts by severity and whether the dataset is usable (no errors)."""
    counts = {s: sum(p.severity == s for p in problems) for s in ("error", "warning", "info")}
    return {**counts, "usable": counts["error"] == 0}


