"""Face frames from videos, the paper's way: at most five images per minute, sharp, no near-duplicates.

Each video is decoded once, in order, with FFmpeg's threaded decoding (PyAV). The minute is cut into
`per_minute` slots of 60/per_minute s; the kept frame of a slot is the **first acceptable frame from the
slot's start** (not the sharpest of the slot: that would need every frame's pixels, and decoding alone
then would no longer set the pace). A frame every `PROBE_S` s of video from each slot's start is examined
(the quality report covers the whole video, so examining goes on after a slot's frame is kept); the frames
between are decoded and skipped without touching their pixels. A frame is acceptable when

- it is scorable (`judge`, the quality gate: the face found, whole, big enough, not turned too far, neither too
  dark nor too bright, and sharp: `sharpness`, the variance of the 4-neighbour Laplacian of the face region's luma,
  binned to a short side of 120-239 px, on the 0-255 scale, at least `min_sharpness`), and
- it is not a near-duplicate of a frame already kept from the same video: summed dHash + pHash Hamming
  distance above `data.check.HASH_THRESHOLD` (the threshold of `data check`), hashes of the saved crop.

A video that fails part-way (a decoder error) is reported and its frames are dropped. Where the face is: the whole
frame, one fixed rectangle (`crop`), or per frame from a lab's keypoints or a trained detector (`faces`,
`video.faces`, `video.detector`): each kept frame is cut to the square around its face, with a margin.

Output: `OUT/frames/<video>/<video>_<frame>.jpg`, `OUT/manifest.csv` (`path,subject,session,time_s,sharpness,
video` [+ `FACE_FIELDS` with a face source or crop] + the sidecar's other columns; `path` relative to the
manifest), which `predict` and `summary.join` read, and `OUT/quality.csv` (`QUALITY_FIELDS`: every frame examined,
scorable or not and why). Resumable: each video is extracted into `frames/.<video>.tmp/` and renamed to
`frames/<video>/` with its `done.json` (the video's size and mtime, the settings, what was kept and examined); a
rerun keeps those that match and redoes the others. The tables are assembled at the end, each written to a
temporary name and renamed.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from ..data.check import HASH_THRESHOLD, perceptual_hashes
from ..errors import InputError, where
from ..paths import atomic_write_text
from .faces import NO_FACE, UNSURE, pose_bin, square_in_frame

# Default sharpness floor (`frame_sharpness`). Measured on the synthetic videos (`synth.render_videos` defaults: 12
# clips of 60 s at 10 fps, 160x120, H.264 crf 20, 7,200 frames): sharp frames 282-1,650 (per-clip medians 480-1,172),
# the 865 frames under the renderer's motion blur (Gaussian, radius 3 px) 6.4-15.5; on the 120x120 face crop
# 363-1,994 and 6.3-18.2. 60 sits 3.9x above the blurred maximum and 4.7x below the sharp minimum.
# `benchmarks/frames.py` sweeps the blur radius (160x120): frames blurred by 1.5 px or more all fall below 60
# (at most 32.9), by 1 px about a third of them (43.6-80.5), by 0.5 px none (285-497).
MIN_SHARPNESS = 60.0
SHARPNESS_SIDE = 120  # px: frames are binned to about this short side before their sharpness is measured
PROBE_S = 0.2  # while a slot has no frame yet, examine a frame every 0.2 s of video
VERSION = 2  # of the per-video outputs; part of `done.json`, so a change redoes every video
FIELDS = ("path", "subject", "session", "time_s", "sharpness", "video")
# with a face source or a crop: where the face is, the head's pose (from keypoints) and the gate's verdict (always
# scorable: the manifest keeps scorable frames only; quality.csv has every frame examined)
FACE_FIELDS = ("box_x", "box_y", "box_w", "box_h", "pose_yaw", "pose_roll", "pose_bin", "scorable", "reason")
QUALITY_FIELDS = ("video", "frame", "time_s", "scorable", "reason", "sharpness", "light", "box_x", "box_y", "box_w", "box_h",
                  "pose_yaw", "file", "subject", "session")  # quality.csv: every frame examined
# The quality gate (`judge`). Light: the face region's mean luma on the 0-255 scale. The synthetic clips' faces sit at
# 90-200 (their darkest lab 0.85 of the light); the paper's criterion is only "clear", so these are our choice.
DARK, BRIGHT = 40.0, 215.0
MIN_FACE = 32  # px: a smaller face holds too little to grade (the LBP methods' 8x8 grid would get 4 px cells)
MAX_YAW = 60.0  # degrees: beyond it one eye and one ear are mostly hidden (the replica's turned heads: 60-72)
CUT_SHARE = 0.1  # a face with more than this share of its box outside the frame is cut by the frame edge
# The crop around a found face: its box grown by MARGIN x its side on each side and moved down by DROP x its side,
# framing the face as the replica's images (what models are trained on) do: the renderer's face box (head and ears)
# is 0.75 of the image's side, its centre 0.116 of the side above the image's (medians over poses and rats).
MARGIN, DROP = 0.17, 0.155
REASONS = (NO_FACE, UNSURE, "face cut by the frame edge", "face smaller than min-face", "pose beyond max-yaw", "too dark",
           "too bright", "blurred")
PLANAR_8BIT = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv411p", "yuv410p",
               "nv12", "nv21", "gray"}


@dataclass(frozen=True)
class Job:
    file: Path  # the video
    name: str  # its folder under frames/
    meta: dict  # subject, session, video (as given) and the sidecar's other columns


def sharpness(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian ([0 1 0; 1 -4 1; 0 1 0], valid region) of a 2-D uint8 image, after
    binning it (block means) by the integer factor that brings its shorter side to 120-239 px (`SHARPNESS_SIDE`;
    no binning below 240), so that one floor means the same blur at 160x120 as at 1920x1080."""
    return sharpness_and_light(gray)[0]


def sharpness_and_light(gray: np.ndarray) -> tuple[float, float]:
    """(`sharpness`, the mean of the binned image): one pass over the pixels for both."""
    f = max(1, min(gray.shape) // SHARPNESS_SIDE)
    if f > 1:  # block sums as f strided adds per axis (7x faster than reshape-and-sum; exact in uint16 up to f = 15)
        h, w = gray.shape[0] // f * f, gray.shape[1] // f * f
        cols = gray[:h, 0:w:f].astype(np.uint16 if f * f * 255 < 2 ** 16 else np.uint32)
        for k in range(1, f):
            cols += gray[:h, k:w:f]
        g = cols[0::f].astype(np.int32)
        for k in range(1, f):
            g += cols[k::f]
    else:
        g = gray.astype(np.int32)
    lap = (g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]).astype(np.float64)
    return float(lap.var() / f ** 4), float(g.mean() / f ** 2)


def frame_sharpness(frame: av.VideoFrame, crop=None) -> float:
    """`sharpness` of a decoded frame's luma, `crop` (x, y, w, h) applied, on the 0-255 scale whatever its range."""
    return sharpness(_luma(frame, crop)) * _range_gain(frame)


def extract(videos, out_dir, per_minute: int = 5, min_sharpness: float = MIN_SHARPNESS, crop=None, subject: str | None = None,
            session: str | None = None, sidecar=None, progress: bool = True, on_error=None, quality: int = 95,
            faces=None, min_face: int = MIN_FACE, max_yaw: float | None = MAX_YAW, margin: float = MARGIN) -> Path:
    """Extract face frames from `videos` into `out_dir`; returns `out_dir/manifest.csv` (and writes `quality.csv`).

    videos: a video file, a list of them, or None for every video of `sidecar`. per_minute: the most frames kept
    per minute of video (the paper: five), one per slot of 60/per_minute s. crop: (x, y, w, h) in frame pixels,
    applied before judging and saving. subject, session: the same for every video (default: from `sidecar`, else
    the video's file name and blank). sidecar: a CSV `video,subject,session,...` (video relative to the CSV); its
    other columns are carried into the manifest. progress: a tqdm bar per video on a terminal. faces: where the face
    is (`faces.FaceSource`, from `faces.parse_source("dlc:PATH")`): per frame from keypoints or a detector, each kept
    frame the square around its face, with `box_x,box_y,box_w,box_h` (video pixels) and the head's
    `pose_yaw,pose_roll,pose_bin` (keypoints only) and `scorable,reason` in the manifest (`FACE_FIELDS`, with a crop
    too). `fixed:x,y,w,h` is `crop`.
    The quality gate (`judge`) gives every frame examined (every `PROBE_S` s from each slot's start) `scorable` and a
    `reason`; only scorable frames are kept, and `quality.csv` lists them all (`QUALITY_FIELDS`; `quality_lines`
    summarises it per video). min_sharpness: frames below it are blurred (`frame_sharpness`); the default 60 lies
    between the synthetic videos' motion-blurred frames (at most 15.5) and their sharp ones (at least 282), and drops
    a Gaussian blur of 1.5 px or more (measured numbers beside `MIN_SHARPNESS`). min_face: the smallest face side
    (px); max_yaw: the largest |yaw| (degrees, keypoints only; None: any); margin: a found face's crop is its box grown
    by this share of its side on each side (not a fixed crop). quality: JPEG quality of the saved frames.
    A video that cannot be decoded is reported in one line to `on_error` (default: printed to stderr) and left
    out; the others go on. InputError before any work for a missing file or a bad sidecar or crop, and at the end
    when no video could be read.
    """
    if per_minute < 1:
        raise InputError(f"per_minute {per_minute}: must be at least 1")
    if min_face < 3 or (max_yaw is not None and not 0 < max_yaw <= 90):
        raise InputError(f"min_face {min_face} / max_yaw {max_yaw}: want min_face >= 3 px and max_yaw in (0, 90] degrees")
    if not 0 <= margin <= 1:
        raise InputError(f"margin {margin}: want a share of the face's side between 0 and 1")
    if faces is not None and faces.kind == "fixed":
        crop, faces = faces.box, None
    crop = _crop(crop)
    jobs = plan(videos, sidecar, subject, session)
    detector = None
    if faces is not None and faces.kind == "detector":
        from .detector import load

        detector = load(faces.path)
    keypoints = faces is not None and detector is None
    tracked = {job.file: faces.frames_of(job.file) for job in jobs} if keypoints else {}  # bad files: before any work
    for job in jobs if keypoints else ():
        n = _frame_count(job.file)
        if n and tracked[job.file]["n"] != n:
            raise InputError(f"{tracked[job.file]['file']}: keypoints for {tracked[job.file]['n']} frames, the video "
                             f"{job.meta['video']} has {n}")
    out_dir = Path(out_dir)
    (out_dir / "frames").mkdir(parents=True, exist_ok=True)
    settings = {"version": VERSION, "per_minute": int(per_minute), "min_sharpness": float(min_sharpness),
                "crop": list(crop) if crop else None, "quality": int(quality), "probe_s": PROBE_S, "min_face": int(min_face),
                "max_yaw": max_yaw, "margin": float(margin) if faces is not None else 0.0,
                **({"faces": faces.stamp()} if faces is not None else {}),
                **({"detector": detector.stamp()} if detector is not None else {})}
    report = on_error or (lambda line: print(line, file=sys.stderr))
    rows, judged, failed = [], [], []
    for job in jobs:
        try:
            frames, candidates = extract_one(job, out_dir, settings, progress, tracked.get(job.file), detector)
        except (av.error.FFmpegError, ValueError, OSError, EOFError) as e:
            line = f"{job.meta['video']}: cannot decode this video ({_one_line(e)}); skipped"
            failed.append(line)
            report(line)
            continue
        rows += [{**f, **job.meta} for f in frames]  # columns put in order by the CSV writer
        judged += [{**c, **job.meta, "file": str(job.file.resolve())} for c in candidates]
    if failed and len(failed) == len(jobs):
        raise InputError(f"no video could be decoded ({len(failed)} of {len(jobs)}); first: {failed[0]}")
    fields = [*FIELDS, *(FACE_FIELDS if faces is not None or crop else ())]
    extras = [k for k in jobs[0].meta if k not in fields]
    manifest = out_dir / "manifest.csv"
    quality_fields = [*QUALITY_FIELDS, *[k for k in extras if k not in QUALITY_FIELDS]]
    atomic_write_text(out_dir / "quality.csv", _csv_text(quality_fields, judged))
    atomic_write_text(manifest, _csv_text([*fields, *extras], rows))
    return manifest


def quality_lines(quality) -> list[str]:
    """Per video of a `quality.csv`: how many frames were examined, the share scorable, and each reason's share."""
    table = list(csv.DictReader(Path(quality).read_text(encoding="utf-8").splitlines()))
    lines = []
    for video in dict.fromkeys(r["video"] for r in table):
        mine = [r for r in table if r["video"] == video]
        n = len(mine)
        ok = sum(r["scorable"] == "true" for r in mine)
        counts = {reason: sum(r["reason"] == reason for r in mine) for reason in REASONS}
        why = ", ".join(f"{reason} {_percent(c / n)}" for reason, c in sorted(counts.items(), key=lambda kv: -kv[1]) if c)
        lines.append(f"{video}: {n} frames examined, {_percent(ok / n)} scorable" + (f"; {why}" if why else ""))
    return lines


def plan(videos, sidecar, subject: str | None, session: str | None) -> list[Job]:
    """One Job per video, with its manifest columns; InputError for a missing video or one the sidecar lacks."""
    table = read_sidecar(Path(sidecar)) if sidecar is not None else {}
    if videos is None:
        if sidecar is None:
            raise InputError("no videos given (pass video files, or a sidecar listing them)")
        files = list(table)
    else:
        files = [Path(v).expanduser() for v in ([videos] if isinstance(videos, (str, os.PathLike)) else videos)]
    if not files:
        raise InputError("no videos to extract")
    given = {}
    for f in files:
        if not f.is_file():
            raise InputError(f"{f}: no such video file")
        key = f.resolve()
        if sidecar is not None and key not in table:
            raise InputError(f"{f}: not listed in the sidecar {sidecar}")
        given[key] = f
    stems = [f.stem for f in given]
    jobs = []
    for key, f in given.items():
        meta = dict(table.get(key) or {"video": str(f), "subject": f.stem, "session": ""})
        meta["subject"] = subject if subject is not None else meta["subject"]
        meta["session"] = session if session is not None else meta["session"]
        name = f.stem if stems.count(f.stem) == 1 else f"{f.stem}-{hashlib.sha1(str(key).encode()).hexdigest()[:8]}"
        jobs.append(Job(f, name, meta))
    return jobs


def read_sidecar(path: Path) -> dict[Path, dict]:
    """{resolved video path: {video, subject, session, other columns}} of a sidecar CSV."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: no such sidecar file") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in ("video", "subject") if c not in header]
    if missing:
        raise InputError(f"{where(path, 1)}: a sidecar needs columns video,subject[,session] (missing: {', '.join(missing)})")
    reader.fieldnames = header
    out = {}
    for row in reader:
        row = {k: (v or "").strip() for k, v in row.items() if k is not None}
        line = where(path, reader.line_num)
        if not row["video"] or not row["subject"]:
            raise InputError(f"{line}: empty {'video' if not row['video'] else 'subject'}")
        key = (path.parent / row["video"]).expanduser().resolve()
        if key in out:
            raise InputError(f"{line}: video {row['video']} listed twice")
        out[key] = {"video": row["video"], "subject": row["subject"], "session": row.get("session", ""),
                    **{k: v for k, v in row.items() if k not in ("video", "subject", "session")}}
    return out


def _crop(crop):
    if crop is None:
        return None
    try:
        x, y, w, h = (int(v) for v in crop)
    except (TypeError, ValueError):
        raise InputError(f"crop {crop!r}: want four integers x, y, w, h") from None
    if x < 0 or y < 0 or w < 3 or h < 3:
        raise InputError(f"crop {crop!r}: want x, y >= 0 and w, h >= 3")
    return x, y, w, h


def extract_one(job: Job, out_dir: Path, settings: dict, progress: bool, face: dict | None = None,
                detector=None) -> tuple[list[dict], list[dict]]:
    """The kept frames of one video ({path, time_s, sharpness}) and every frame examined (`judge`'s rows), reused when
    its folder is complete and current. `face`: its keypoints' boxes and pose per frame (`faces.FaceSource.frames_of`);
    `detector`: a loaded face detector (`detector.load`)."""
    folder = out_dir / "frames" / job.name
    st = job.file.stat()
    stamp = {"video": str(job.file.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, **settings}
    if face is not None:
        fs = face["file"].stat()
        stamp["faces_file"] = [str(face["file"].resolve()), fs.st_size, fs.st_mtime_ns]
    done = folder / "done.json"
    if done.is_file():
        saved = json.loads(done.read_text(encoding="utf-8"))
        if saved.get("stamp") == stamp:
            return saved["frames"], saved["examined"]
    tmp = folder.with_name(f".{job.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        frames, examined = scan(job, tmp, folder.name, settings, progress, face, detector)
        (tmp / "done.json").write_text(json.dumps({"stamp": stamp, "frames": frames, "examined": examined}, indent=1) + "\n",
                                       encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return frames, examined


def scan(job: Job, tmp: Path, name: str, settings: dict, progress: bool, face: dict | None = None,
         detector=None) -> tuple[list[dict], list[dict]]:
    """Decode the video once, judging a frame every `PROBE_S` s from each slot's start and keeping the first scorable
    one of each slot that is not a near-duplicate; JPEGs written into `tmp`. Returns (kept, examined)."""
    per_minute = settings["per_minute"]
    kept, examined, hashes = [], [], []
    with av.open(str(job.file)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        width, height = stream.codec_context.width, stream.codec_context.height
        crop = settings["crop"]
        if crop and (crop[0] + crop[2] > width or crop[1] + crop[3] > height):
            raise ValueError(f"crop {tuple(crop)} outside the {width}x{height} frame")
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        with tqdm(total=_frame_total(stream), desc=name, unit="frame", disable=None if progress else True, leave=False) as bar:
            slot_done, slot_now, next_probe = -1, -1, 0.0
            for i, frame in enumerate(container.decode(stream)):
                bar.update()
                t = frame.time if frame.time is not None else i / rate
                slot = math.floor(t * per_minute / 60.0 + 1e-9)
                if slot != slot_now:
                    slot_now, next_probe = slot, t
                if t < next_probe - 1e-6:
                    continue
                next_probe = t + PROBE_S
                if face is not None:  # (a keypoint file shorter than its video: no face past its end)
                    box, yaw, missing = ((face["box"][i], face["yaw"][i], face["missing"][i]) if i < face["n"]
                                         else ((np.nan,) * 4, np.nan, NO_FACE))
                elif detector is not None:
                    found = detector.detect([frame.to_ndarray(format="rgb24")])[0]  # the square around its box
                    side = max(found[2], found[3]) if found else np.nan
                    box = ((found[0] + found[2] / 2 - side / 2, found[1] + found[3] / 2 - side / 2, side, side) if found
                           else (np.nan,) * 4)
                    yaw, missing = np.nan, "" if found else NO_FACE
                else:
                    box, yaw, missing = crop or (0, 0, width, height), np.nan, ""
                row, region = judge(frame, box, yaw, missing, settings, width, height)
                examined.append({"frame": i, "time_s": round(float(t), 3), **row})
                if not row["scorable"] or slot == slot_done:
                    continue
                image = frame.to_image()
                if region != (0, 0, width, height):
                    image = image.crop((region[0], region[1], region[0] + region[2], region[1] + region[3]))
                h = perceptual_hashes(image)
                if any(_distance(h, o) <= HASH_THRESHOLD for o in hashes):
                    continue
                file = f"{name}_{i:06d}.jpg"
                image.save(tmp / file, "JPEG", quality=settings["quality"])
                hashes.append(h)
                kept.append({"path": f"frames/{name}/{file}", "time_s": round(float(t), 3), "sharpness": row["sharpness"],
                             **{k: row[k] for k in ("box_x", "box_y", "box_w", "box_h", "pose_yaw")},
                             "pose_roll": "" if face is None or np.isnan(face["roll"][i]) else round(float(face["roll"][i]), 1),
                             "pose_bin": pose_bin(yaw), "scorable": "true", "reason": ""})
                slot_done = slot
    for row in examined:
        row["scorable"] = "true" if row["scorable"] else "false"
    return kept, examined


def judge(frame: av.VideoFrame, box, yaw: float, missing: str, settings: dict, width: int, height: int):
    """The quality gate of one frame: ({scorable, reason, sharpness, light, box_x.., pose_yaw}, the region to crop: the
    box grown by `margin` x its side on every side and moved down by `DROP` x its side (none without a margin), cut
    to the frame).
    `box`: where the face is (x, y, w, h, floats; NaN where not found); `missing`: why the face cannot be scored
    though it may be found ("": it can); `yaw`: degrees or NaN.
    The first failing check is the reason, in `REASONS` order: no face, the face cut by the frame edge (more than
    `CUT_SHARE` of its box outside), smaller than `min_face` px, |yaw| above `max_yaw`, too dark or too bright (the
    region's mean luma under `DARK` or over `BRIGHT`), blurred (sharpness under `min_sharpness`)."""
    row = {"scorable": False, "reason": missing, "sharpness": "", "light": "", "box_x": "", "box_y": "", "box_w": "",
           "box_h": "", "pose_yaw": "" if np.isnan(yaw) else round(float(yaw), 1)}
    if np.isnan(box[0]):
        row["reason"] = missing or NO_FACE
        return row, None
    inside = square_in_frame(box, width, height)
    m, drop = settings["margin"] * max(box[2], box[3]), (DROP * max(box[2], box[3]) if settings["margin"] else 0.0)
    region = square_in_frame((box[0] - m, box[1] - m + drop, box[2] + 2 * m, box[3] + 2 * m), width, height)
    row.update(zip(("box_x", "box_y", "box_w", "box_h"), (round(float(v), 1) for v in box)))
    if missing:
        return row, region
    if inside is None or inside[2] * inside[3] < (1 - CUT_SHARE) * box[2] * box[3]:
        row["reason"] = "face cut by the frame edge"
        return row, region
    if min(box[2], box[3]) < settings["min_face"]:
        row["reason"] = "face smaller than min-face"
        return row, region
    if settings["max_yaw"] is not None and abs(yaw) > settings["max_yaw"]:
        row["reason"] = "pose beyond max-yaw"
        return row, region
    gain = _range_gain(frame)
    sharp, light = sharpness_and_light(_luma(frame, region))
    sharp, light = sharp * gain, (light - (16 if gain != 1 else 0)) * gain ** 0.5  # on the 0-255 scale
    row.update(sharpness=round(sharp, 2), light=round(light, 1))
    row["reason"] = ("too dark" if light < DARK else "too bright" if light > BRIGHT
                     else "blurred" if sharp < settings["min_sharpness"] else "")
    row["scorable"] = not row["reason"]
    return row, region


def _frame_total(stream) -> int | None:
    """A video stream's frame count: as its container states it, else from its duration (None where neither is known)."""
    rate = float(stream.average_rate or stream.guessed_rate or 25)
    return stream.frames or (int(float(stream.duration * stream.time_base) * rate) if stream.duration else None)


def _frame_count(file: Path) -> int | None:
    """`_frame_total` of a video file's first video stream (None where it cannot be read)."""
    try:
        with av.open(str(file)) as c:
            return _frame_total(c.streams.video[0]) if c.streams.video else None
    except (av.error.FFmpegError, OSError):
        return None


def _luma(frame: av.VideoFrame, crop) -> np.ndarray:
    """The frame's 8-bit luma as a 2-D view (the Y plane, no copy, where the pixel format allows), cropped."""
    if frame.format.name in PLANAR_8BIT:
        plane = frame.planes[0]
        y = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width]
    else:
        y = frame.to_ndarray(format="gray")
    if crop:
        x0, y0, w, h = crop
        y = y[y0:y0 + h, x0:x0 + w]
    return y


def _range_gain(frame: av.VideoFrame) -> float:
    """(255/219)^2 for limited-range luma (16-235: most H.264), so sharpness reads as on 0-255 gray (what
    `to_ndarray(format="gray")` gives); 1 for full-range frames and for those `_luma` converts to gray."""
    name = frame.format.name
    if name not in PLANAR_8BIT or name == "gray" or name.startswith("yuvj") or frame.color_range == 2:
        return 1.0
    return (255 / 219) ** 2


def _distance(a: tuple[int, int], b: tuple[int, int]) -> int:
    return (a[0] ^ b[0]).bit_count() + (a[1] ^ b[1]).bit_count()


def _percent(share: float) -> str:
    return "<1%" if 0 < share < 0.005 else ">99%" if 0.995 <= share < 1 else f"{share:.0%}"


def _one_line(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _csv_text(fields, rows) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fields, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()
