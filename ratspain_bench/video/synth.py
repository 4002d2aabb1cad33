"""Synthetic cage videos of the replica's rats, before (`pre`) and after (`post`) a treatment.

Each rat keeps its replica look (`look_for`). The head pose follows a smooth random walk
(Ornstein-Uhlenbeck steps of yaw, pitch and roll around the rat's own pose distribution) with episodes
of a head turned away (|yaw| >= `TURNED_YAW`); the head, a square of `FACE_SHARE` of the frame's height, wanders over
the whole frame (two sines per axis), so that no one fixed crop holds it for a whole clip; some stretches are
strongly blurred (motion blur: a Gaussian of `BLUR_RADIUS` px over the whole frame). The four AU
intensities drift slowly around the rat's resting face (about 0.3) and rise by `effect` (times a per-rat
sensitivity in [0.8, 1.2]) in the `post` session of the `treated` group only: control post ~ pre. The default
effect, 1.0, is moderate pain (mean AU about 1.3, RGS level 1); an LBP-SVM trained on a small replica sees it as a
rise of P(pain) of about 0.15-0.2 in every treated rat, while the rats' baselines differ by about 0.1.

Speed: the face is drawn by `draw_face` at `key_fps` keyframes per second (about 8 ms each), each time from a
fresh generator, as the replica draws its images (fur strokes, camera jitter and the cage behind the head change
with it); the frames between two keyframes reuse the last keyframe's face, shifted by the sway, with other sensor
noise, so every frame differs from the one before. Everything comes from `SeedSequence([seed, rat, session, ...])`,
and x264 runs single-threaded without macroblock-tree rate control: the same seed gives the same bytes.
"""
from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageFilter

from ..data.rat_face import draw_face, look_for, site_look
from ..errors import InputError
from ..tasks import AUS

SESSIONS = ("pre", "post")
TURNED_YAW = 55.0  # |yaw| at or above which the head counts as turned away (eyes mostly hidden)
BLUR_RADIUS = 3.0  # default Gaussian radius (px of a 120 px high frame, scaled with the height) of a blurred stretch
NOISE_SD = 1.5  # per-frame sensor noise, 8-bit units
FACE_SHARE = 0.6  # the face's side over the frame's height (1.0: the face fills the height and sways sideways only)
REACH = 0.9  # how far the head wanders: a share of the free space on each side of the frame's middle
# One thread and no macroblock-tree rate control: byte-identical clips for a seed (with mbtree, x264 encoded the
# same frames differently on a second call in one process; with threads, output depends on the core count).
X264 = {"crf": "20", "preset": "veryfast", "threads": "1", "x264-params": "mbtree=0"}
VIDEO_FIELDS = ("video", "subject", "session", "group")
TRUTH_FIELDS = ("video", "frame", "time_s", "blurred", "turned", "pose_yaw", "pose_pitch", "pose_roll",
                *(f"au_{a}" for a in AUS))


def render_videos(out_dir, groups=("control", "treated"), rats_per_group: int = 3, seconds: float = 60, fps: float = 10,
                  size=(160, 120), seed: int = 0, treated: str = "treated", effect: float = 1.0, key_fps: float = 2.0,
                  blur: float = BLUR_RADIUS, codec: str = "libx264", sites: int | None = None,
                  face: float = FACE_SHARE) -> Path:
    """Render one clip per rat and session into `out_dir/videos/<subject>_<session>.mp4`; returns `out_dir/videos.csv`.

    `videos.csv`: `video,subject,session,group` (video relative to the CSV), the sidecar `frames.extract` reads.
    `truth.csv`: one row per frame (`video,frame,time_s,blurred,turned,pose_*,au_*`): what the renderer drew;
    `faces.json`, `keypoints/<clip>.csv` and `.h5`: the true face boxes and a tracker's keypoints (`write_faces`).
    Subjects are `<group><n>` (control1, ...), the i-th rat over all groups having look `look_for(i)`.
    size: (width, height) of the frames; the face is a square of `face` x the height, wandering over the frame.
    `effect`: the rise of every AU intensity in the treated group's post session. blur: the Gaussian radius of the blurred stretches (px of a
    120 px high frame). `sites`: the rats recorded in this many labs (`data.rat_face.SITES`, rats shared round-robin;
    a `site` column in `videos.csv`). Written in a temporary sibling, renamed when complete.
    """
    from ..data.synth import site_name, site_of

    out_dir = Path(out_dir)
    width, height = (int(v) for v in size)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InputError(f"{out_dir}: exists and is not empty; refusing to overwrite")
    if height < 32 or width < height or width % 2 or height % 2:
        raise InputError(f"size {width}x{height}: want even width >= height >= 32")
    if seconds <= 0 or fps <= 0 or not 0 < key_fps <= fps or rats_per_group < 1 or not groups:
        raise InputError("seconds, fps, key_fps (<= fps) and rats_per_group must be positive, and groups non-empty")
    if not 0.25 <= face <= 1 or round(face * height) < 32:
        raise InputError(f"face {face}: want a share of the height in [0.25, 1] and a face of at least 32 px")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        (tmp / "videos").mkdir()
        videos, truth, faces = [], [], {}
        for g, group in enumerate(groups):
            for r in range(rats_per_group):
                index = g * rats_per_group + r
                subject = f"{group}{r + 1}"
                gain = effect * np.random.default_rng(np.random.SeedSequence([seed, index])).uniform(0.8, 1.2)
                for s, session in enumerate(SESSIONS):
                    rise = gain if group == treated and session == "post" else 0.0
                    name = f"videos/{subject}_{session}.mp4"
                    site = site_of(index, sites)
                    marks: list = []
                    rows = render_clip(tmp / name, seed, index, s, rise, seconds, fps, (width, height), key_fps,
                                       blur, codec, site, marks, face)
                    faces[name] = (marks, [r["time_s"] for r in rows], (seed, index, s), subject)
                    videos.append({"video": name, "subject": subject, "session": session, "group": group,
                                   **({} if site is None else {"site": site_name(site)})})
                    truth += [{"video": name, **row} for row in rows]
        _write_csv(tmp / "videos.csv", VIDEO_FIELDS + (("site",) if sites else ()), videos)
        _write_csv(tmp / "truth.csv", TRUTH_FIELDS, truth)
        write_faces(tmp, faces, (width, height))
        os.chmod(tmp, 0o755)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir / "videos.csv"


def tracked(marks: list, rng: np.random.Generator):
    """What a keypoint tracker would give for a clip's true keypoints: (xy (frames, 5, 2), likelihood (frames, 5)).
    A part in view: jitter of 1 px, likelihood 0.85-1; hidden (turned away, behind the head): a guess 6 px off,
    likelihood 0-0.3; 3% of the seen parts a glitch (8 px off, likelihood 0.1-0.5)."""
    from .faces import PARTS

    n = len(marks)
    true = np.array([[m["parts"].get(p, (np.nan, np.nan, False))[:2] for p in PARTS] for m in marks], float)
    seen = np.array([[bool(m["parts"].get(p, (0, 0, False))[2]) for p in PARTS] for m in marks])
    glitch = seen & (rng.random((n, len(PARTS))) < 0.03)
    sd = np.where(seen & ~glitch, 1.0, np.where(glitch, 8.0, 6.0))[..., None]
    xy = true + rng.standard_normal((n, len(PARTS), 2)) * sd
    lk = np.where(seen & ~glitch, rng.uniform(0.85, 1.0, (n, len(PARTS))),
                  np.where(glitch, rng.uniform(0.1, 0.5, (n, len(PARTS))), rng.uniform(0.0, 0.3, (n, len(PARTS)))))
    return xy.round(2), lk.round(4)


def write_faces(root: Path, faces: dict, size) -> None:
    """The ground truth for finding faces, beside `videos.csv`: `faces.json` (COCO boxes of every frame's face, cut to
    the frame, each image naming its video, frame and `time_s`), and per clip what trackers would give for its keypoints:
    `keypoints/<clip>.csv` (DeepLabCut's CSV) and `keypoints/<clip>.h5` (SLEAP's analysis file). `faces`: {clip:
    (marks, times, random key, subject)}; each COCO image names its `subject` (the animal)."""
    import json

    from .faces import PARTS, Track, write_dlc_csv, write_sleap_h5

    width, height = size
    images, annotations = [], []
    (root / "keypoints").mkdir()
    for video, (marks, times, key, subject) in faces.items():
        for i, (m, t) in enumerate(zip(marks, times)):
            images.append({"id": len(images) + 1, "file_name": video, "video": video, "frame": i, "time_s": t,
                           "width": width, "height": height, "subject": subject})
            fx, fy, fw, fh = m["face"]  # the head's box, cut to the frame (a box a lab draws is inside the image)
            x0, y0 = max(fx, 0.0), max(fy, 0.0)
            x, y, w, h = (round(float(v), 2) for v in (x0, y0, min(fx + fw, width) - x0, min(fy + fh, height) - y0))
            annotations.append({"id": len(annotations) + 1, "image_id": len(images), "category_id": 1, "bbox": [x, y, w, h],
                                "area": round(w * h, 2), "iscrowd": 0})
        xy, lk = tracked(marks, np.random.default_rng(np.random.SeedSequence([*key, 3])))
        track = Track(PARTS, xy, lk, video)
        stem = Path(video).stem
        write_dlc_csv(root / "keypoints" / f"{stem}.csv", track)
        write_sleap_h5(root / "keypoints" / f"{stem}.h5", [track])
    coco = {"info": {"description": "ratspain_bench synthetic clips: the true face box of every frame"},
            "images": images, "annotations": annotations, "categories": [{"id": 1, "name": "face"}]}
    (root / "faces.json").write_text(json.dumps(coco, separators=(",", ":")) + "\n", encoding="utf-8")


def _write_csv(path: Path, fields, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def rat_look(index: int, site: int | None = None):
    """The i-th rat's replica look, as recorded at `site` (None: the default lab)."""
    return look_for(index) if site is None else site_look(look_for(index), site)


def timeline(seed: int, index: int, session: int, rise: float, n_keys: int, key_fps: float, site: int | None = None) -> dict:
    """Per keyframe: pose (n, 3) degrees, AU intensities (n, 4), blurred (n,) and the light level (n,)."""
    look = rat_look(index, site)
    rng = np.random.default_rng(np.random.SeedSequence([seed, index, session]))
    dt = 1.0 / key_fps
    mu = np.array([0.0, look.pitch_mu, 0.0])
    sd = np.array([look.yaw_sd, look.pitch_sd, look.roll_sd])
    tau = 2.0  # seconds: how long the head keeps a pose
    a = np.exp(-dt / tau)
    pose = np.empty((n_keys, 3))
    x = mu + sd * rng.standard_normal(3)
    turn, side, target = 0.0, 1.0, 0.0
    for k in range(n_keys):
        x = mu + a * (x - mu) + sd * np.sqrt(1 - a * a) * rng.standard_normal(3)
        if target == 0.0 and rng.random() < 0.02 * dt * (1 + 4 * look.yaw_turned):  # a turn every 17-36 s
            side, target = rng.choice([-1.0, 1.0]), 1.0
        elif target == 1.0 and rng.random() < dt / 2.0:  # turned for about 2 s
            target = 0.0
        turn += (target - turn) * min(1.0, 2.0 * dt)
        pose[k] = x + [side * turn * rng.uniform(60, 72), 0, 0]
    pose[:, 0] = pose[:, 0].clip(-78, 78)
    pose[:, 1:] = pose[:, 1:].clip(-35, 35)

    rest = 0.25 + np.asarray(look.au_offset) + rng.uniform(-0.1, 0.1, len(AUS))
    drift = np.empty((n_keys, len(AUS)))
    d = 0.15 * rng.standard_normal(len(AUS))
    b = np.exp(-dt / 20.0)
    for k in range(n_keys):
        d = b * d + 0.15 * np.sqrt(1 - b * b) * rng.standard_normal(len(AUS))
        drift[k] = d
    au = (rest + rise + drift).clip(0, 2)

    blurred = np.zeros(n_keys, bool)  # motion blur: about 0.12 stretches a second, 0.5-2 s each
    k = 0
    while k < n_keys:
        if rng.random() < 0.12 * dt:
            n = max(1, int(round(rng.uniform(0.5, 2.0) * key_fps)))
            blurred[k:k + n] = True
            k += n
        k += 1
    light = look.light * (1 + 0.04 * np.sin(2 * np.pi * np.arange(n_keys) * dt / 37 + rng.uniform(0, 6.3)))
    return {"pose": pose.round(1), "au": au.round(3), "blurred": blurred, "light": light}


def render_clip(path: Path, seed: int, index: int, session: int, rise: float, seconds: float, fps: float, size,
                key_fps: float = 2.0, blur: float = BLUR_RADIUS, codec: str = "libx264", site: int | None = None,
                marks: list | None = None, face_share: float = FACE_SHARE) -> list[dict]:
    """Encode one clip; returns its truth rows (without `video`). `marks`, where given, gets one entry a frame: the
    true face box and keypoints in the frame's pixels (`rat_face._Face.landmarks`, `face_box`)."""
    width, height = size
    side = int(round(face_share * height / 2)) * 2
    n_frames = max(1, int(round(seconds * fps)))
    n_keys = int(np.floor((n_frames - 1) / fps * key_fps)) + 1
    tl = timeline(seed, index, session, rise, n_keys, key_fps, site)
    look = rat_look(index, site)
    rng = np.random.default_rng(np.random.SeedSequence([seed, index, session, 1]))
    radius = blur * height / 120
    quality = 92 if not site else sum(look.quality) // 2  # another lab's camera compresses as its images do

    def face(k: int) -> np.ndarray:
        # A fresh draw per keyframe, as the replica's images: fur strokes, camera jitter and the cage behind the head
        # change with it (draw_face paints them from one generator), so no one draw decides how a rat looks to a model.
        draw = np.random.default_rng(np.random.SeedSequence([seed, index, session, 2, k]))
        data, _, drawn = draw_face(look, dict(zip(AUS, tl["au"][k])), tuple(tl["pose"][k]), draw, side, quality,
                                   look.blur * side / 256, 1.0, float(tl["light"][k]), landmarks=True)
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), drawn

    first, first_marks = face(0)
    canvas = np.asarray(Image.fromarray(first).resize((width, height), Image.BILINEAR).filter(ImageFilter.GaussianBlur(6)))
    span = np.array([width - side, height - side]) / 2  # the free space on each side of the middle, x and y
    phase, period = rng.uniform(0, 2 * np.pi, (2, 2)), rng.uniform(9, 23, (2, 2))  # (axis, component)
    # sensor noise from a bank of fields taken in turn: consecutive frames never share one, and 7 draws are cheap
    noise = (rng.standard_normal((7, height, width, 3), np.float32) * NOISE_SD).round().astype(np.int16)
    rows, key, current, drawn = [], -1, first, first_marks
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=_rate(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = dict(X264)
        for i in range(n_frames):
            t = i / fps
            k = min(n_keys - 1, int(np.floor(t * key_fps + 1e-9)))
            if k != key:
                key, (current, drawn) = k, face(k) if k else (first, first_marks)
            wander = np.sin(2 * np.pi * t / period + phase) @ [0.6, 0.4]  # in [-1, 1] per axis
            x, y = (int(v) for v in np.round(span + span * REACH * wander))
            frame = canvas.copy()
            frame[y:y + side, x:x + side] = current
            if tl["blurred"][k]:
                frame = np.asarray(Image.fromarray(frame).filter(ImageFilter.GaussianBlur(radius)))
            noisy = frame.astype(np.int16) + noise[i % len(noise)]
            vf = av.VideoFrame.from_ndarray(np.clip(noisy, 0, 255).astype(np.uint8), format="rgb24")
            vf.pts = i
            for packet in stream.encode(vf):
                out.mux(packet)
            if marks is not None:  # the face pasted at (x, y): its box and keypoints, moved with it
                fx, fy, fw, fh = drawn["face"]
                marks.append({"face": [fx + x, fy + y, fw, fh],
                              "parts": {p: (px + x, py + y, seen) for p, (px, py, seen) in drawn["parts"].items()}})
            yaw, pitch, roll = tl["pose"][k]
            rows.append({"frame": i, "time_s": round(t, 4), "blurred": int(tl["blurred"][k]),
                         "turned": int(abs(yaw) >= TURNED_YAW), "pose_yaw": yaw, "pose_pitch": pitch, "pose_roll": roll,
                         **{f"au_{a}": v for a, v in zip(AUS, tl["au"][k])}})
        for packet in stream.encode():
            out.mux(packet)
    return rows


def _rate(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)
