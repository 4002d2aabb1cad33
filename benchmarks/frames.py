"""`video.frames.extract` against a bare PyAV decode loop on the same file, and the sharpness of blurred frames.

    python benchmarks/frames.py [--seconds 120] [--fps 30] [--repeats 3]

1. Speed: one synthetic 640x480 H.264 clip (`video.synth.render_clip`, the replica's renderer) of `--seconds` at
   `--fps`. In this process and alternating, best of `--repeats`: (a) a bare loop `for f in container.decode(stream)`
   with FFmpeg's threaded decoding (`thread_type = "AUTO"`, as `extract` uses), (b) the same loop single-threaded
   (for reference), (c) `extract` into a fresh folder (five frames a minute, default sharpness floor). Printed:
   frames/s of each, (c)/(a) (target >= 0.8), (c)/(b), and (c)'s multiple of real time (target >= 10). Then where
   the face is (issue 33): (d) `extract` with `--faces fixed:` (the true boxes' median square at their mean place)
   and (e) with `--faces dlc:` (the clip's tracker keypoints, `video.synth.tracked`): (e)/(d) (target >= 0.8).
2. The sharpness floor: 160x120 clips whose blurred stretches use Gaussian radii 0.5 to 3 px; per radius, the
   largest sharpness of a blurred frame, against the smallest of a sharp one and `MIN_SHARPNESS`.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import pandas as pd

from ratspain_bench.video.faces import PARTS, Track, parse_source, write_dlc_csv
from ratspain_bench.video.frames import MIN_SHARPNESS, extract, frame_sharpness
from ratspain_bench.video.synth import render_clip, tracked


def bare_decode(path: Path, threaded: bool) -> int:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        if threaded:
            stream.thread_type = "AUTO"
        n = 0
        for _ in c.decode(stream):
            n += 1
    return n


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def speed(root: Path, seconds: float, fps: float, repeats: int) -> None:
    clip = root / "clip640.mp4"
    marks: list = []
    t, _ = timed(lambda: render_clip(clip, 0, 1, 0, 0.0, seconds, fps, (640, 480), marks=marks))
    write_dlc_csv(root / "clip640.csv", Track(PARTS, *tracked(marks, np.random.default_rng(0)), "clip640"))
    boxes = np.array([m["face"] for m in marks])
    side = float(np.median(boxes[:, 2]))
    x, y = (boxes[:, :2] + boxes[:, 2:] / 2).mean(axis=0) - side / 2
    fixed = parse_source(f"fixed:{int(x)},{int(y)},{int(side)},{int(side)}")
    dlc = parse_source(f"dlc:{root / 'clip640.csv'}")
    with av.open(str(clip)) as c:
        s = c.streams.video[0]
        info = f"{s.codec_context.name} {s.codec_context.width}x{s.codec_context.height} {s.codec_context.pix_fmt}"
    n = bare_decode(clip, True)
    print(f"clip: {info}, {seconds:g} s at {fps:g} fps = {n} frames, {clip.stat().st_size / 1e6:.1f} MB (rendered in {t:.1f} s)")
    best = {"bare, threaded": np.inf, "bare, one thread": np.inf, "extract": np.inf, "faces fixed:": np.inf, "faces dlc:": np.inf}
    kept = 0
    for r in range(repeats):
        best["bare, threaded"] = min(best["bare, threaded"], timed(lambda: bare_decode(clip, True))[0])
        best["bare, one thread"] = min(best["bare, one thread"], timed(lambda: bare_decode(clip, False))[0])
        out = root / f"x{r}"
        t, manifest = timed(lambda out=out: extract(clip, out, progress=False))
        best["extract"] = min(best["extract"], t)
        kept = len(pd.read_csv(manifest))
        shutil.rmtree(out)
        for name, source in (("faces fixed:", fixed), ("faces dlc:", dlc)):
            best[name] = min(best[name], timed(lambda out=out, source=source: extract(clip, out, progress=False, faces=source))[0])
            shutil.rmtree(out)
    for k, v in best.items():
        print(f"  {k:17s} {v:6.2f} s  {n / v:7.1f} frames/s  {seconds / v:6.1f}x real time")
    print(f"extract / bare threaded decode: {best['bare, threaded'] / best['extract']:.3f} (target >= 0.8); "
          f"extract / bare one-thread decode: {best['bare, one thread'] / best['extract']:.3f}; "
          f"extract {seconds / best['extract']:.1f}x real time (target >= 10); kept {kept} frames")
    print(f"--faces dlc: / --faces fixed: {best['faces fixed:'] / best['faces dlc:']:.3f} (target >= 0.8)")


def blur_sweep(root: Path) -> None:
    print(f"sharpness of 160x120 frames by blur radius (MIN_SHARPNESS = {MIN_SHARPNESS:g}):")
    sharp_min = np.inf
    for radius in (0.5, 1.0, 1.5, 2.0, 3.0):
        clip = root / f"blur{radius}.mp4"
        truth = pd.DataFrame(render_clip(clip, 0, 2, 0, 0.0, 90, 10, (160, 120), blur=radius))
        with av.open(str(clip)) as c:
            values = np.array([frame_sharpness(f) for f in c.decode(video=0)])
        blurred = truth["blurred"].to_numpy(bool)
        sharp_min = min(sharp_min, values[~blurred].min())
        print(f"  radius {radius:3.1f} px: blurred frames {values[blurred].min():7.1f} to {values[blurred].max():7.1f} "
              f"(n={blurred.sum()}), below the floor: {np.mean(values[blurred] < MIN_SHARPNESS):.0%}")
    print(f"  sharp frames: min {sharp_min:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--fps", type=float, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"{os.cpu_count()} CPUs; PyAV {av.__version__}")
    root = Path(tempfile.mkdtemp(prefix="ratspain-frames-bench-"))
    try:
        speed(root, args.seconds, args.fps, args.repeats)
        blur_sweep(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
