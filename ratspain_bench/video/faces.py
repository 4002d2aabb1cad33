"""Where the face is on each frame, from keypoints a lab already tracks.

Sources: a DeepLabCut CSV (three header rows: scorer, bodyparts, coords x/y/likelihood; one row per frame) or `.h5`
(the same table, written by pandas with PyTables), and a SLEAP analysis HDF5 (`tracks` (tracks, 2, nodes, frames),
`node_names`, `track_occupancy` (frames, tracks) and, where present, `point_scores` (tracks, nodes, frames)). Each
becomes a `Track`: per frame and body part, x, y and a likelihood (SLEAP's point score; 1 where the file has none;
NaN x/y where the part is untracked).

The face needs five parts, the rat's own left and right: `nose`, `left_eye`, `right_eye`, `left_ear`, `right_ear`,
mapped from the file's names by `--keypoints nose=snout,left_eye=eyeL,...` or found among common spellings.
On each frame:
- the face box: a square from all five parts (`face_box.predict`, a quadratic regression fitted on the replica
  renderer's rats, whose true box is the square around the head and ears), where at least 3 parts are seen and all
  five are tracked (a part under `min_likelihood` enters at its tracked place); NaN elsewhere;
- the head's yaw and roll, from the parts at or above `min_likelihood`: roll is the angle of the line between the eyes
  (or the ears); yaw is atan(dx / (DEPTH x spread)), dx the nose's offset from the middle of the ears and spread the
  ears' distance apart: a nose DEPTH ear spreads ahead of the ears (the renderer's rats: 1.4) moves sideways by DEPTH x
  spread x tan(yaw) over a spread shrinking by cos(yaw). Signed as the renderer's pose (positive: the nose to the
  image's right).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from . import face_box

PARTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
ALIASES = {
    "nose": ("nose", "snout", "nose_tip", "nosetip", "tip"),
    "left_eye": ("left_eye", "lefteye", "eye_left", "l_eye", "leye", "eyel"),
    "right_eye": ("right_eye", "righteye", "eye_right", "r_eye", "reye", "eyer"),
    "left_ear": ("left_ear", "leftear", "ear_left", "l_ear", "lear", "earl"),
    "right_ear": ("right_ear", "rightear", "ear_right", "r_ear", "rear", "earr"),
}
DEPTH = 1.4  # how far the nose sits ahead of the ears, over the ears' spread (the renderer's rats)


@dataclass(frozen=True)
class Track:
    """Keypoints of one animal: `xy` (frames, parts, 2) pixels, NaN where untracked; `likelihood` (frames, parts)."""

    parts: tuple[str, ...]
    xy: np.ndarray
    likelihood: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.xy)


# ---------------------------------------------------------------- reading and writing


def read_dlc_csv(path) -> Track:
    """A DeepLabCut CSV: rows 1-3 scorer / bodyparts / coords, then one row per frame (its index first)."""
    path = Path(path)
    if path.suffix.lower() in (".h5", ".hdf5"):
        return read_dlc_h5(path)
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot be read as a DeepLabCut CSV ({e})") from None
    if len(rows) < 4 or not rows[0] or rows[0][0].strip().lower() != "scorer":
        raise InputError(f"{path}:1: not a DeepLabCut CSV (expected the header rows scorer, bodyparts, coords)")
    if rows[1] and rows[1][0].strip().lower() == "individuals":
        raise InputError(f"{path}:2: a multi-animal DeepLabCut file (an `individuals` row): export one animal's CSV")
    parts_row, coords = rows[1], rows[2]
    if parts_row[0].strip().lower() != "bodyparts" or coords[0].strip().lower() != "coords":
        raise InputError(f"{path}:2: expected the rows bodyparts and coords under scorer")
    names = list(dict.fromkeys(p.strip() for p in parts_row[1:]))
    col = {}
    for j, (p, c) in enumerate(zip(parts_row[1:], coords[1:]), start=1):
        col[(p.strip(), c.strip().lower())] = j
    missing = [f"{p}.{c}" for p in names for c in ("x", "y", "likelihood") if (p, c) not in col]
    if missing:
        raise InputError(f"{path}:3: no column for {', '.join(missing[:4])}")
    data = rows[3:]
    for i, r in enumerate(data):
        if len(r) != len(parts_row):
            raise InputError(f"{path}:{i + 4}: {len(r)} fields, the header has {len(parts_row)}")
    cells = np.array(data, dtype=str).reshape(len(data), len(parts_row))
    cells = np.where(np.char.strip(cells) == "", "nan", cells)
    index = [[col[(p, c)] for c in ("x", "y", "likelihood")] for p in names]
    try:
        values = cells[:, index].astype(float)  # (frames, parts, 3)
    except ValueError:
        for i, r in enumerate(cells):  # the first row that is not numbers, for the message
            for k, p in enumerate(names):
                try:
                    r[index[k]].astype(float)
                except ValueError:
                    raise InputError(f"{path}:{i + 4}: {p}: x, y and likelihood must be numbers") from None
        raise
    return Track(tuple(names), values[..., :2], np.nan_to_num(values[..., 2]), str(path))


def write_dlc_csv(path, track: Track, scorer: str = "synthetic") -> None:
    """`track` as DeepLabCut writes it (three header rows, the frame index first)."""
    parts = [p for p in track.parts for _ in range(3)]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["scorer", *[scorer] * len(parts)])
        w.writerow(["bodyparts", *parts])
        w.writerow(["coords", *["x", "y", "likelihood"] * len(track.parts)])
        for i in range(len(track)):
            vals = []
            for k in range(len(track.parts)):
                x, y = track.xy[i, k]
                vals += ["" if np.isnan(x) else f"{x:.3f}", "" if np.isnan(y) else f"{y:.3f}", f"{track.likelihood[i, k]:.4f}"]
            w.writerow([i, *vals])


def read_dlc_h5(path) -> Track:
    """A DeepLabCut `.h5`: the same table as its CSV, stored by pandas (`to_hdf`, PyTables) with the column levels
    scorer / bodyparts / coords."""
    import pandas as pd

    try:
        table = pd.read_hdf(path)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a DeepLabCut .h5 ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    cols = getattr(table, "columns", None)
    if not isinstance(cols, pd.MultiIndex) or cols.nlevels not in (3, 4):
        raise InputError(f"{path}: not a DeepLabCut .h5 (expected the column levels scorer, bodyparts, coords)")
    if cols.nlevels == 4:
        raise InputError(f"{path}: a multi-animal DeepLabCut file (an `individuals` level): export one animal's file")
    names = list(dict.fromkeys(cols.get_level_values(1)))
    xy = np.full((len(table), len(names), 2), np.nan)
    lk = np.zeros((len(table), len(names)))
    for k, part in enumerate(names):
        got = {c.lower(): table.xs(part, axis=1, level=1).xs(c, axis=1, level=1).iloc[:, 0].to_numpy(float)
               for c in cols.get_level_values(2).unique() if c.lower() in ("x", "y", "likelihood")}
        if len(got) < 3:
            raise InputError(f"{path}: body part {part} lacks x, y or likelihood")
        xy[:, k, 0], xy[:, k, 1] = got["x"], got["y"]
        lk[:, k] = np.nan_to_num(got["likelihood"])
    return Track(tuple(names), xy, lk, str(path))


def read_sleap_h5(path, track: int | None = None) -> Track:
    """A SLEAP analysis HDF5: `track` (an index) or its one track."""
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise InputError(f"{path}: not a SLEAP analysis HDF5 ({e})") from None
    with f:
        for name in ("tracks", "node_names"):
            if name not in f:
                raise InputError(f"{path}: not a SLEAP analysis file (no dataset {name!r}; has {', '.join(sorted(f))})")
        tracks = np.asarray(f["tracks"], dtype=float)  # (tracks, 2, nodes, frames)
        names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in f["node_names"][()])
        scores = np.asarray(f["point_scores"], dtype=float) if "point_scores" in f else None
        occupancy = np.asarray(f["track_occupancy"], dtype=bool) if "track_occupancy" in f else None
    if tracks.ndim != 4 or tracks.shape[1] != 2 or tracks.shape[2] != len(names):
        raise InputError(f"{path}: tracks has shape {tracks.shape}; expected (tracks, 2, {len(names)} nodes, frames)")
    n = tracks.shape[0]
    if track is None:
        if n != 1:
            raise InputError(f"{path}: {n} tracks; name one with --track N (0 to {n - 1})")
        track = 0
    if not 0 <= track < n:
        raise InputError(f"{path}: no track {track} (the file has {n}: 0 to {n - 1})")
    xy = np.transpose(tracks[track], (2, 1, 0))  # (frames, nodes, 2)
    lk = np.transpose(scores[track]) if scores is not None else np.where(np.isnan(xy[..., 0]), 0.0, 1.0)
    if occupancy is not None:
        xy = np.where(occupancy[:, track][:, None, None], xy, np.nan)
    lk = np.where(np.isnan(xy[..., 0]), 0.0, np.nan_to_num(lk))
    return Track(names, xy, lk, str(path))


def write_sleap_h5(path, tracks: list[Track]) -> None:
    """`tracks` (one per animal, the same parts and frames) as a SLEAP analysis HDF5."""
    import h5py

    parts = tracks[0].parts
    with h5py.File(path, "w") as f:
        f["tracks"] = np.stack([np.transpose(t.xy, (2, 1, 0)) for t in tracks]).astype(np.float64)
        f["point_scores"] = np.stack([t.likelihood.T for t in tracks]).astype(np.float64)
        f["track_occupancy"] = np.stack([~np.all(np.isnan(t.xy[..., 0]), axis=1) for t in tracks], axis=1).astype(np.uint8)
        f["node_names"] = np.array([p.encode() for p in parts])
        f["track_names"] = np.array([f"track_{i}".encode() for i in range(len(tracks))])


# ---------------------------------------------------------------- the five parts, the box, the pose


def parse_mapping(text: str | None) -> dict[str, str]:
    """`nose=snout,left_eye=eyeL,...` -> {part: the file's name}."""
    out = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in PARTS or not value.strip():
            raise InputError(f"--keypoints {text!r}: want PART=NAME pairs, PART one of {', '.join(PARTS)}")
        out[key.strip()] = value.strip()
    return out


def select(track: Track, mapping: dict[str, str] | None = None) -> Track:
    """The five face parts of `track`, in `PARTS` order (named by `mapping`, else by common spellings)."""
    mapping = dict(mapping or {})
    lower = {p.lower().replace("-", "_").replace(" ", "_"): p for p in track.parts}
    chosen = []
    for part in PARTS:
        name = mapping.get(part) or next((lower[a] for a in ALIASES[part] if a in lower), None)
        if name is None or name not in track.parts:
            given = f"--keypoints {part}={name}" if part in mapping else f"no body part named like {part}"
            raise InputError(f"{track.source}: {given}; its body parts are {', '.join(track.parts)} "
                             f"(map them with --keypoints {','.join(f'{p}=NAME' for p in PARTS)})")
        chosen.append(track.parts.index(name))
    return Track(PARTS, track.xy[:, chosen], track.likelihood[:, chosen], track.source)


def _seen(track: Track, min_likelihood: float) -> np.ndarray:
    return (track.likelihood >= min_likelihood) & ~np.isnan(track.xy[..., 0])


def face_boxes(track: Track, min_likelihood: float = 0.6) -> np.ndarray:
    """(frames, 4) square boxes x, y, w, h (pixels, floats) of the face; NaN rows with fewer than 3 parts seen or a part
    untracked (see the module doc)."""
    out = np.full((len(track), 4), np.nan)
    found = (_seen(track, min_likelihood).sum(axis=1) >= 3) & ~np.isnan(track.xy).any(axis=(1, 2))
    if found.any():
        out[found] = face_box.predict(track.xy[found])
    return out


def head_pose(track: Track, min_likelihood: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """(yaw, roll) in degrees per frame (NaN where the parts needed are not seen); see the module doc."""
    seen = _seen(track, min_likelihood)
    xy = track.xy
    n = len(track)
    yaw, roll = np.full(n, np.nan), np.full(n, np.nan)
    nose, le, re, lear, rear = range(5)
    for i in range(n):
        s = seen[i]
        for a, b in ((le, re), (lear, rear)):
            if s[a] and s[b]:
                d = xy[i, a] - xy[i, b]
                roll[i] = float(np.degrees(np.arctan2(d[1], d[0])))
                break
        if s[nose] and s[lear] and s[rear]:
            dx = xy[i, nose, 0] - (xy[i, lear, 0] + xy[i, rear, 0]) / 2
            spread = abs(xy[i, lear, 0] - xy[i, rear, 0])
            yaw[i] = float(np.degrees(np.arctan2(dx, DEPTH * spread)))
    return yaw, roll


def iou(a, b) -> np.ndarray:
    """Intersection over union of boxes x, y, w, h (arrays (N, 4)); NaN where either is NaN."""
    a, b = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(b, float))
    x0, y0 = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    x1, y1 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]), np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    return inter / (a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter)


# ---------------------------------------------------------------- `frames --faces SOURCE`

POSE_FRONTAL, POSE_MODERATE = 15.0, 40.0  # |yaw| bins of the replica (`data.synth.pose_bin`)
NO_FACE, UNSURE = "no face found", "keypoints below the likelihood threshold"  # the quality gate's reasons (`frames`)


@dataclass(frozen=True)
class FaceSource:
    """Where `frames` finds the face: `fixed` (one rectangle, today's `--crop`), keypoints per frame from `dlc` or
    `sleap` files (`path`: the file, for one video, or a folder holding `<video stem>.csv` / `.h5` per video), or a
    `detector` trained by `detector train` (`path`: its model folder), run on each frame examined."""

    kind: str
    path: Path | None = None
    box: tuple[int, int, int, int] | None = None
    mapping: tuple = ()
    min_likelihood: float = 0.6
    track: int | None = None

    def file_for(self, video: Path) -> Path:
        if self.path is None:
            raise ValueError("a fixed source has no file")
        if self.path.is_file():
            return self.path
        for suffix in (".csv", ".h5") if self.kind == "dlc" else (".h5",):  # a folder of DeepLabCut CSVs holds no SLEAP file
            f = self.path / f"{Path(video).stem}{suffix}"
            if f.is_file():
                return f
        raise InputError(f"--faces {self.kind}:{self.path}: no {Path(video).stem}.{'csv' if self.kind == 'dlc' else 'h5'} "
                         f"for the video {video}")

    def frames_of(self, video: Path) -> dict:
        """Per frame of `video`: `box` (F, 4) squares, NaN where the face is not found, `yaw` and `roll` (F,), and
        `missing` (F,): "" where all five parts are seen, else why the frame cannot be scored (`NO_FACE`: fewer than 3
        parts tracked at all; `UNSURE`: a part under `min_likelihood`: the box may still be known, from 3 or 4 parts,
        but a grade needs both eyes, both ears and the nose)."""
        f = self.file_for(video)
        track = read_dlc_csv(f) if self.kind == "dlc" else read_sleap_h5(f, self.track)
        track = select(track, dict(self.mapping))
        yaw, roll = head_pose(track, self.min_likelihood)
        tracked = (~np.isnan(track.xy[..., 0])).sum(axis=1)
        seen = _seen(track, self.min_likelihood).sum(axis=1)
        missing = np.where(seen == len(PARTS), "", np.where(tracked >= 3, UNSURE, NO_FACE))
        box = face_boxes(track, self.min_likelihood)
        return {"box": box, "yaw": yaw, "roll": roll, "missing": missing, "file": f, "n": len(track)}

    def stamp(self) -> dict:
        return {"kind": self.kind, "path": str(self.path) if self.path else None, "box": list(self.box) if self.box else None,
                "mapping": list(self.mapping), "min_likelihood": self.min_likelihood, "track": self.track}


def parse_source(text: str | None, keypoints: str | None = None, min_likelihood: float = 0.6, track: int | None = None):
    """`dlc:PATH`, `sleap:PATH`, `detector:MODEL` or `fixed:x,y,w,h` (None: no source) as a FaceSource; InputError in
    one line."""
    if text is None:
        return None
    kind, sep, rest = str(text).partition(":")
    if not sep or kind not in ("dlc", "sleap", "fixed", "detector"):
        raise InputError(f"--faces {text!r}: expected dlc:PATH, sleap:PATH, detector:MODEL or fixed:x,y,w,h")
    if not 0 <= min_likelihood <= 1:
        raise InputError(f"--min-likelihood {min_likelihood}: want a number between 0 and 1")
    if kind == "fixed":
        try:
            box = tuple(int(v) for v in rest.split(","))
        except ValueError:
            box = ()
        if len(box) != 4 or box[0] < 0 or box[1] < 0 or box[2] < 3 or box[3] < 3:
            raise InputError(f"--faces {text!r}: want fixed:x,y,w,h, four integers, x, y >= 0 and w, h >= 3")
        return FaceSource("fixed", box=box)
    path = Path(rest).expanduser()
    if not path.exists():
        raise InputError(f"--faces {text!r}: no such file or folder")
    if kind == "detector":
        return FaceSource(kind, path)
    return FaceSource(kind, path, mapping=tuple(sorted(parse_mapping(keypoints).items())), min_likelihood=float(min_likelihood),
                      track=track)


def pose_bin(yaw: float) -> str:
    if np.isnan(yaw):
        return ""
    a = abs(yaw)
    return "frontal" if a < POSE_FRONTAL else "moderate" if a < POSE_MODERATE else "extreme"


def square_in_frame(box, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The integer square of `box` (x, y, w, h) cut to the frame; None where nothing of it is inside."""
    x0, y0 = max(0, int(round(box[0]))), max(0, int(round(box[1])))
    x1, y1 = min(width, int(round(box[0] + box[2]))), min(height, int(round(box[1] + box[3])))
    return (x0, y0, x1 - x0, y1 - y0) if x1 - x0 >= 3 and y1 - y0 >= 3 else None
