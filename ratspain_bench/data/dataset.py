"""Read a dataset (manifest CSV, annotation JSON, SUBJECT/LEVEL folders, or the replica) into one table.

Every reader returns the rows it could use plus a list of `Problem`s naming file and row, so
`data check` can report all of them while `load_dataset` stops at the first error.
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from ..errors import InputError, where
from .raters import RATER_COLUMN

LEVELS = {"0": 0, "1": 1, "2": 2, "no_pain": 0, "moderate": 1, "severe": 2}
LEVEL_NAMES = ("no_pain", "moderate", "severe")
AU_COLUMNS = ("au_orbital", "au_nose", "au_ears", "au_whiskers")
POSE_COLUMNS = ("pose_yaw", "pose_pitch", "pose_roll")
POSE_BINS = ("frontal", "moderate", "extreme")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
PROVENANCE = "provenance.json"  # beside the manifest: {"labels_public": bool, ...}, written by `synth`


@dataclass(frozen=True)
class Problem:
    """One finding about a dataset: `error` makes it unusable, `warning` does not."""

    severity: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.where}: {self.message}"


@dataclass(frozen=True, eq=False)
class Dataset:
    """A validated dataset: one row per usable image.

    Table columns: `image` (id as written in the source, used in predictions files), `file`
    (absolute image path), `subject` (str), `level` (nullable 0/1/2), `label` (0/1), `confidence`,
    `where` (file:line of the row), plus any of the AU, pose and rater columns of the contract (rater
    columns `rater_<id>_au_<name>` as nullable ints), and any other column of a manifest as text (site, strain,
    camera, session: what `leave-one-group-out:COLUMN` holds out). `n_low_confidence_excluded` counts the
    `confidence=low` rows left out: all of them by default, only the unlabelled ones when included.
    `labels_public`: whether anyone can recompute the labels (the built-in replica, a replica whose seed is
    known; see `read_provenance`): outside methods are not ranked on such a dataset.
    """

    name: str
    source: str
    table: pd.DataFrame
    has_images: bool = True
    n_low_confidence_excluded: int = 0
    extra: dict = field(default_factory=dict)
    labels_public: bool = False

    def __len__(self) -> int:
        return len(self.table)

    @property
    def subjects(self) -> list[str]:
        """Subject ids in a stable order (numeric ids sorted as numbers)."""
        return sort_subjects(self.table["subject"].unique())

    @property
    def labels(self):
        return self.table["label"].to_numpy()

    def label_fingerprint(self) -> str:
        """Digest of the name and the labelled rows (image id, subject, label)."""
        h = hashlib.sha256(self.name.encode())
        for row in self.table[["image", "subject", "label"]].itertuples(index=False):
            h.update(f"{row.image}\t{row.subject}\t{row.label}\n".encode())
        return h.hexdigest()[:16]

    @cached_property
    def keys(self) -> tuple[str, ...]:
        """A digest of each image file's bytes, in table order (cache keys for per-image work)."""
        from .cache import content_keys

        self.require_images()
        return content_keys(self.table["file"].tolist())

    @cached_property
    def fingerprint(self) -> str:
        """What identifies this dataset everywhere (job folders, predictions files, MLflow): the labelled
        rows and, when the images are there, their content. Two folders with the same name differ."""
        if not self.has_images:
            return self.label_fingerprint()
        return hashlib.sha1((self.label_fingerprint() + "|".join(self.keys)).encode()).hexdigest()[:16]

    def require_images(self) -> None:
        if not self.has_images:
            raise InputError(
                f"{self.source}: labels only (no image files found beside it); "
                "training and scoring methods need the images, only `data check` and `data imbalance` work"
            )


def sort_subjects(ids) -> list[str]:
    ids = [str(s) for s in ids]
    return sorted(ids, key=lambda s: (0, int(s), s) if s.isdigit() else (1, 0, s))


def _level(value: str):
    return LEVELS.get(value.strip().lower())


# ---------------------------------------------------------------- readers


def read_manifest_csv(path: Path) -> tuple[list[dict], list[Problem]]:
    """Rows and problems of a `manifest.csv` (contract columns, header required, order free)."""
    rows, problems = [], []
    root = path.parent
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        return [], [Problem("error", str(path), f"not UTF-8 text ({e.reason} at byte {e.start})")]
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    missing = [c for c in ("path", "subject") if c not in header]
    if not {"level", "label"} & set(header):
        missing.append("level (or label)")
    if missing:
        names = ", ".join(missing)
        shown = ",".join(header[:8]) + (f",... ({len(header)} columns)" if len(header) > 8 else "")
        return [], [Problem("error", where(path, 1), f"missing column {names} (header: {shown})")]
    for raw in reader:
        line = reader.line_num
        rec, errs = _parse_row(raw, line, path)
        problems += errs
        if rec is not None:
            rec["file"] = str((root / rec["image"]).resolve())
            rows.append(rec)
    return rows, problems


def _parse_row(raw: dict, line: int, path: Path) -> tuple[dict | None, list[Problem]]:
    at = where(path, line)
    get = lambda c: (raw.get(c) or "").strip()  # noqa: E731
    errs: list[Problem] = []
    image, subject = get("path"), get("subject")
    if not image:
        errs.append(Problem("error", at, "empty path"))
    if not subject:
        errs.append(Problem("error", at, "empty subject"))
    level = None
    if get("level"):
        level = _level(get("level"))
        if level is None:
            errs.append(Problem("error", at, f"unknown level {get('level')!r} (expected 0, 1, 2, no_pain, moderate or severe)"))
    label = None
    if get("label"):
        label = {"0": 0, "1": 1}.get(get("label"))
        if label is None:
            errs.append(Problem("error", at, f"unknown label {get('label')!r} (expected 0 or 1)"))
    if level is not None and label is not None and label != int(level >= 1):
        errs.append(Problem("error", at, f"label {label} contradicts level {level} (label is level >= 1)"))
    confidence = get("confidence").lower() or "high"
    if confidence not in ("high", "low"):
        errs.append(Problem("error", at, f"unknown confidence {get('confidence')!r} (expected high or low)"))
    if not get("level") and not get("label") and confidence != "low":  # the paper leaves low images unlabelled
        errs.append(Problem("error", at, "no level and no label"))
    rec = {"image": image, "subject": subject, "level": level,
           "label": label if label is not None else (None if level is None else int(level >= 1)),
           "confidence": confidence, "where": at}
    for c in AU_COLUMNS + tuple(k for k in raw if k and RATER_COLUMN.match(k)):
        if c in raw:
            v = get(c)
            if v and v not in ("0", "1", "2"):
                errs.append(Problem("error", at, f"{c} must be 0, 1, 2 or blank, got {v!r}"))
            rec[c] = int(v) if v in ("0", "1", "2") else None
    for c in POSE_COLUMNS:
        if c in raw:
            try:
                rec[c] = float(get(c)) if get(c) else None
            except ValueError:
                errs.append(Problem("error", at, f"{c} must be a number in degrees, got {get(c)!r}"))
    if "pose_bin" in raw:
        v = get("pose_bin").lower()
        if v and v not in POSE_BINS:
            errs.append(Problem("error", at, f"unknown pose_bin {v!r} (expected {', '.join(POSE_BINS)})"))
        rec["pose_bin"] = v or None
    for c in raw:  # any other column (site, strain, camera, session, ...): kept as text, for protocols to group by
        if c and c not in rec and c not in ("path", "file"):
            rec[c] = get(c) or None
    return (None if any(e.severity == "error" for e in errs) else rec), errs


def read_annotation_json(path: Path) -> tuple[list[dict], list[Problem]]:
    """WhiteFurredMice-style JSON: {"img.png": [{"AnimalNumber": "1", "GrimaceScale": "0", ...}]}."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        return [], [Problem("error", str(path), f"not UTF-8 text ({e.reason} at byte {e.start})")]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        return [], [Problem("error", where(path, e.lineno), f"invalid JSON: {e.msg}")]
    if not isinstance(data, dict):
        return [], [Problem("error", str(path), "expected an object mapping image names to annotation lists")]
    rows, problems = [], []
    lines = _key_lines(text, data.keys())
    for key, records in data.items():
        at = where(path, lines.get(key))
        rec = records[0] if isinstance(records, list) and records else records
        if not isinstance(rec, dict):
            problems.append(Problem("error", at, f"{key}: expected a list with one annotation object"))
            continue
        subject = str(rec.get("AnimalNumber", "")).strip()
        grimace = str(rec.get("GrimaceScale", "")).strip()
        level = _level(grimace) if grimace else None
        if not subject:
            problems.append(Problem("error", at, f"{key}: no AnimalNumber"))
        if level is None:
            problems.append(Problem("error", at, f"{key}: GrimaceScale {grimace!r} missing or unknown (expected 0, 1 or 2)"))
        if subject and level is not None:
            rows.append({"image": key, "subject": subject, "level": level, "label": int(level >= 1),
                         "confidence": "high", "where": at, "file": str((path.parent / key).resolve())})
    return rows, problems


def _key_lines(text: str, keys) -> dict:
    """Line number of each top-level key in a JSON text (for messages; JSON has no rows)."""
    out, pos = {}, 0
    for key in keys:
        i = text.find(json.dumps(key), pos)
        if i >= 0:
            out[key] = text.count("\n", 0, i) + 1
            pos = i
    return out


LAYOUTS = ("a folder with manifest.csv (columns path, subject, level or label), a manifest .csv, an annotation .json, "
           "or SUBJECT/LEVEL/*.jpg|png folders (LEVEL 0, 1, 2, no_pain, moderate or severe)")


def read_folder_tree(root: Path) -> tuple[list[dict], list[Problem]]:
    """A tree `SUBJECT/LEVEL/*.{jpg,jpeg,png}`, LEVEL 0/1/2 or no_pain/moderate/severe. A misnamed level folder in a tree
    is an error of its own; a folder that is no such tree (no level folder at all, or folders where level folders
    should be under one subject, or more than three of them: e.g. `images/<rat>/` without its manifest.csv) is one
    error naming the accepted layouts."""
    rows, problems, subjects, crowded = [], [], 0, False
    for subject_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        subjects += 1
        folders = sorted(p for p in subject_dir.iterdir() if p.is_dir())
        crowded = crowded or len(folders) > 3
        for level_dir in folders:
            level = _level(level_dir.name)
            if level is None:
                problems.append(Problem("error", str(level_dir), f"unknown level folder {level_dir.name!r} "
                                        "(expected 0, 1, 2, no_pain, moderate or severe)"))
                continue
            for f in sorted(level_dir.iterdir()):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    rows.append({"image": str(f.relative_to(root)), "subject": subject_dir.name, "level": level,
                                 "label": int(level >= 1), "confidence": "high", "where": str(f), "file": str(f.resolve())})
    if not rows or (problems and (crowded or subjects == 1)):
        odd = f" ({Path(problems[0].where).relative_to(root)} is not a level folder)" if problems else ""
        return [], [Problem("error", str(root), f"no manifest.csv in {root}{odd}; accepted: {LAYOUTS}")]
    return rows, problems


# ---------------------------------------------------------------- entry points


def _resolve(data) -> tuple[str, Path]:
    """Which form `--data` takes: ('csv'|'json'|'tree', path)."""
    if data is None:
        from .replica import default_replica

        return "csv", default_replica() / "manifest.csv"
    p = Path(data).expanduser()
    if not p.exists():
        raise InputError(f"{p}: no such file or directory (--data takes {LAYOUTS})")
    if p.is_dir():
        return ("csv", p / "manifest.csv") if (p / "manifest.csv").is_file() else ("tree", p)
    if p.suffix.lower() == ".json":
        return "json", p
    return "csv", p


def read_provenance(folder: Path) -> tuple[bool, list[Problem]]:
    """Whether a dataset folder declares its labels public (`provenance.json`, `labels_public`), and any problem with
    the declaration. No declaration: not public (a maintainer's own data). `synth` writes one: public for a seeded
    replica (anyone can render it again), not for `synth --hidden`."""
    path = Path(folder) / PROVENANCE
    if not path.is_file():
        return False, []
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return False, [Problem("error", str(path), f"not a JSON object ({type(e).__name__})")]
    value = info.get("labels_public") if isinstance(info, dict) else None
    if not isinstance(value, bool):
        return False, [Problem("error", str(path), "labels_public must be true or false")]
    return value, []


def read_dataset(data=None, include_low_confidence: bool = False) -> tuple[Dataset, list[Problem]]:
    """Read any supported form; returns the usable rows and every structural problem found."""
    kind, path = _resolve(data)
    reader = {"csv": read_manifest_csv, "json": read_annotation_json, "tree": read_folder_tree}[kind]
    rows, problems = reader(path)
    problems += _duplicates(rows)
    has_images = True
    if kind == "json":
        has_images = any(Path(r["file"]).is_file() for r in rows)
    if has_images:
        for r in rows:
            if not Path(r["file"]).is_file():
                problems.append(Problem("error", r["where"], f"image not found: {r['image']}"))
    table = pd.DataFrame(rows, columns=None if rows else ["image", "subject", "level", "label", "confidence", "where", "file"])
    n_low = 0
    if len(table):  # low rows are left out by default; one without a label always (nothing can use it)
        low = (table["confidence"] == "low") & (table["label"].isna() | (not include_low_confidence))
        n_low = int(low.sum())
        table = table[~low]
    table = table.reset_index(drop=True)
    if len(table):
        table["level"] = table["level"].astype("Int64")
        table["label"] = table["label"].astype(int)
        table["subject"] = table["subject"].astype(str)
        for c in table.columns:
            if RATER_COLUMN.match(str(c)):
                table[c] = table[c].astype("Int64")
    n_subjects = table["subject"].nunique() if len(table) else 0
    if n_subjects < 2 and not any(p.severity == "error" for p in problems):  # not a knock-on of an error said already
        problems.append(Problem("error", str(path), f"{n_subjects} subject(s): leave-one-subject-out needs at least 2"))
    for subject, group in (table.groupby("subject") if len(table) else []):
        if group["label"].nunique() == 1:
            only = "pain" if group["label"].iloc[0] == 1 else "no pain"
            problems.append(Problem("warning", str(path), f"subject {subject} has one class only ({only}, {len(group)} images)"))
    name = "ratspain-replica" if data is None else (path.parent.name if kind == "csv" else path.stem if kind == "json" else path.name)
    public, declared = read_provenance(path if kind == "tree" else path.parent)
    problems += declared
    ds = Dataset(name=name, source=str(path), table=table, has_images=has_images, n_low_confidence_excluded=n_low,
                 labels_public=public or data is None)  # the built-in replica is rendered from a published seed
    return ds, problems


def _duplicates(rows: list[dict]) -> list[Problem]:
    seen, problems = {}, []
    for r in rows:
        if r["file"] in seen:
            problems.append(Problem("error", r["where"], f"duplicate path {r['image']} (first at {seen[r['file']]})"))
        else:
            seen[r["file"]] = r["where"]
    return problems


def load_dataset(data=None, include_low_confidence: bool = False) -> Dataset:
    """Read and validate; raises `InputError` with the first error (run `data check` for all)."""
    ds, problems = read_dataset(data, include_low_confidence)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        more = f" (and {len(errors) - 1} more: run `ratspain-bench data check`)" if len(errors) > 1 else ""
        raise InputError(f"{errors[0].where}: {errors[0].message}{more}")
    return ds
