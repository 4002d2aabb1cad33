"""Annotated copies of the videos: at every frame, what `frames` saw at the latest candidate and the latest score.

`frames` examines a candidate frame every `frames.PROBE_S` s of video and writes one row per candidate in
`quality.csv` (`summary.read_quality`). Each video (the candidates' `file`) is decoded once, and every frame shows
the state of the latest candidate at or before it: its face box (green when scorable, red when not; none where no
face was found) and, bottom left, why it is not scorable; top left, the score of the latest scored frame of that
video at or before it (`P(pain) 0.73`, or `RGS 1.2` for an action-unit model). Drawn with PIL (its default font,
sized to the frame), encoded as H.264 (yuv420p) with `synth.X264`'s fixed single-thread options: the same inputs
give the same bytes. Each file is written under a temporary name and renamed when complete.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import av
import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from ..errors import InputError
from .summary import BOX, QUALITY
from .synth import X264

COLOURS = {True: (0, 220, 0), False: (230, 0, 0)}  # the face box of a scorable candidate, of one that is not
FRAME_NUMBER = re.compile(r"_(\d+)\.\w+$")  # a kept frame's file, frames/<name>/<name>_<frame:06d>.jpg


def score_text(value: float, rgs: bool) -> str:
    """The score as drawn: `RGS 1.2` (the mean AU grade, 0-2) or `P(pain) 0.73`."""
    return f"RGS {value:.1f}" if rgs else f"P(pain) {value:.2f}"


def write_overlays(frames: pd.DataFrame, quality: pd.DataFrame, out_dir) -> list[Path]:
    """One annotated MP4 per video of `quality` (`summary.read_quality`) in `out_dir`, named by the video's file stem
    (with a hash of its path where two videos share a stem, as `frames` names their folders); `frames`: the manifest
    joined to the scores (`summary.join`). Returns the files. InputError before any is written for a missing video
    file, or scored frames that quality.csv does not describe."""
    source = quality.attrs.get("file", QUALITY)
    score = "rgs" if "rgs" in frames.columns else "pain_probability"
    scored = frames[frames["error"].eq("") & frames[score].notna()]
    if "video" not in scored.columns:
        raise InputError("the manifest has no video column: overlays need a manifest written by frames")
    stranger = scored.loc[~scored["video"].isin(set(quality["video"])), "video"]
    if len(stranger):
        raise InputError(f"{source}: no candidate of video {stranger.iloc[0]}, whose frames were scored; run frames again")
    number = scored["path"].str.extract(FRAME_NUMBER)[0]
    if number.isna().any():
        raise InputError(f"manifest path {scored['path'][number.isna()].iloc[0]}: no frame number in its name "
                         "(want <video>_<frame>.jpg, as frames writes)")
    videos = dict(list(quality.groupby("video", sort=False)))
    files = {video: Path(rows["file"].iloc[0]) for video, rows in videos.items()}
    for video, file in files.items():
        if not file.is_file():
            raise InputError(f"{source}: video {video}: no such file {file}")
    stems = [f.stem for f in files.values()]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for video, rows in videos.items():
        file = files[video]
        name = file.stem if stems.count(file.stem) == 1 else f"{file.stem}-{hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:8]}"
        mine = scored["video"].eq(video)
        written.append(write_overlay(file, rows.sort_values("frame", kind="stable"), number[mine].astype(int).to_numpy(),
                                     scored.loc[mine, score].to_numpy(float), score == "rgs", out_dir / f"{name}.mp4"))
    return written


def write_overlay(file: Path, candidates: pd.DataFrame, scored_at: np.ndarray, scores: np.ndarray, rgs: bool, path: Path) -> Path:
    """Decode `file` once and write it to `path` annotated: `candidates` (its quality rows, in frame order), the
    scored frames' numbers `scored_at` and their `scores`."""
    at = candidates["frame"].to_numpy()
    scorable = candidates["scorable"].to_numpy()
    reasons = candidates["reason"].tolist()
    boxes = candidates[list(BOX)].to_numpy(float)
    order = np.argsort(scored_at, kind="stable")
    scored_at, scores = scored_at[order], scores[order]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with av.open(str(file)) as src, av.open(str(tmp), "w", format="mp4") as dst:
            stream = src.streams.video[0]
            stream.thread_type = "AUTO"
            width, height = stream.codec_context.width, stream.codec_context.height
            if width % 2 or height % 2:
                raise InputError(f"{file}: {width}x{height} frames; an H.264 (yuv420p) overlay needs an even width and height")
            out = dst.add_stream("libx264", rate=stream.average_rate or stream.guessed_rate or 25)
            out.width, out.height, out.pix_fmt, out.options = width, height, "yuv420p", dict(X264)
            font = ImageFont.load_default(max(10, height // 24))
            line = max(2, height // 100)
            for i, frame in enumerate(src.decode(stream)):
                image = frame.to_image()
                c = np.searchsorted(at, i, side="right") - 1
                s = np.searchsorted(scored_at, i, side="right") - 1
                annotate(image, font, line, None if c < 0 else (bool(scorable[c]), reasons[c], boxes[c]),
                         None if s < 0 else score_text(scores[s], rgs))
                picture = av.VideoFrame.from_image(image)
                picture.pts = i
                for packet in out.encode(picture):
                    dst.mux(packet)
            for packet in out.encode():
                dst.mux(packet)
        os.replace(tmp, path)
    except av.error.FFmpegError as e:
        raise InputError(f"{file}: cannot decode this video ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def annotate(image: Image.Image, font, line: int, candidate, text: str | None) -> None:
    """Draw onto `image`: the candidate's (scorable, reason, box) face box and, unscorable, its reason; the score text."""
    draw = ImageDraw.Draw(image)
    pad = line + 1
    if candidate is not None:
        ok, reason, box = candidate
        if np.isfinite(box).all():
            x, y, w, h = (round(v) for v in box)
            draw.rectangle([x, y, x + w - 1, y + h - 1], outline=COLOURS[ok], width=line)
        if not ok:
            label(draw, (pad, image.height - pad), reason, font, "ld", image.width)
    if text is not None:
        label(draw, (pad, pad), text, font, "la", image.width)


def label(draw: ImageDraw.ImageDraw, xy, text: str, font, anchor: str, width: int) -> None:
    """White text on a black band, readable over any fur; wrapped at spaces to fit an image `width` px wide, from `xy`
    down (anchor "la") or up ("ld")."""
    room = width - 2 * xy[0]
    lines = [""]
    for word in text.split():
        wider = f"{lines[-1]} {word}".strip()
        if lines[-1] and draw.textlength(wider, font=font) > room:
            lines.append(word)
        else:
            lines[-1] = wider
    text = "\n".join(lines)
    x0, y0, x1, y1 = draw.multiline_textbbox((0, 0), text, font=font)
    x, y = xy[0], xy[1] if anchor == "la" else xy[1] - y1
    draw.rectangle([x + x0 - 2, y + y0 - 2, x + x1 + 1, y + y1 + 1], fill=(0, 0, 0))
    draw.multiline_text((x, y), text, fill=(255, 255, 255), font=font)
