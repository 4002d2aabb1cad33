"""`FaceDetector.detect` one frame at a time against a bare forward of the same model on the same inputs.

    python benchmarks/detector.py [--model DIR] [--n 100] [--repeats 3] [--threads 1]

Renders the synthetic clips (`synth --video`: six rats, 160x120) into a temporary folder and, unless `--model` names a
trained detector, trains one there (`detector train --no-eval`, 1 epoch: the weights do not change the cost). Then it
decodes the first `--n` frames of the clips and times, alternating, (a) `detector.detect([rgb])` for each frame, the
call the frames extractor makes (scaling, the model, the box in the frame's pixels), and (b) `detector.forward_only`
on each frame's tensor, made by `detector.scaled` beforehand (the model alone); and (c) `frames --faces detector:` on
one 60 s clip at 5 fps (300 frames, every one examined; the model's loading included), its examined frames per second. Best of `--repeats`; the ratios are
(a)'s and (c)'s frames/s over (b)'s, and the boxes of (a) must be those of (b).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch


def main() -> None:
    from ratspain_bench import api
    from ratspain_bench.video.detector import load, load_images, read_coco, scaled
    from ratspain_bench.video.synth import render_videos

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="a detector folder (default: one trained here for 1 epoch)")
    ap.add_argument("--n", type=int, default=100, help="frames (default 100)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        render_videos(tmp / "clips", rats_per_group=3, seconds=10, fps=5, key_fps=2, seed=0)
        boxes = tmp / "clips" / "faces.json"
        if args.model is None:
            args.model = tmp / "model"
            api.detector_train(boxes, out=args.model, folds=False, epochs=1, runs_dir=tmp / "runs")
        detector = load(args.model)
        frames = load_images(read_coco(boxes)[:args.n])
        tensors = [scaled(rgb, detector.settings.image_size)[0] for rgb in frames]
        best = {"detect": float("inf"), "forward": float("inf"), "frames": float("inf")}
        render_videos(tmp / "long", groups=("control",), rats_per_group=1, seconds=60, fps=5, key_fps=2, seed=1)
        clip = tmp / "long" / "videos" / "control1_pre.mp4"  # 60 s at 5 fps: every frame is examined (one each 0.2 s)
        for r in range(args.repeats):
            start = time.perf_counter()
            manifest = api.frames(clip, tmp / f"frames{r}", per_minute=60, faces=f"detector:{args.model}")
            best["frames"] = min(best["frames"], time.perf_counter() - start)
            examined = len(pd.read_csv(manifest.parent / "quality.csv"))
            start = time.perf_counter()
            found = [detector.detect([rgb])[0] for rgb in frames]
            best["detect"] = min(best["detect"], time.perf_counter() - start)
            start = time.perf_counter()
            bare = [detector.forward_only([x])[0] for x in tensors]
            best["forward"] = min(best["forward"], time.perf_counter() - start)
        same = all((f is None) == (not len(b["scores"])) and (f is None or abs(f[4] - float(b["scores"][0])) < 1e-6)
                   for f, b in zip(found, bare))
        fps = {k: (examined if k == "frames" else len(frames)) / v for k, v in best.items()}
        print(f"{len(frames)} frames of 160x120, image_size {detector.settings.image_size}, {args.threads} thread(s), "
              f"best of {args.repeats}")
        print(f"detect([rgb]) per frame: {fps['detect']:.1f} frames/s")
        print(f"bare forward per frame:  {fps['forward']:.1f} frames/s")
        print(f"ratio: {fps['detect'] / fps['forward']:.3f}   same detections: {same}")
        print(f"frames --faces detector: {fps['frames']:.1f} frames examined/s ({examined} frames, decoding, the quality gate "
              f"and the kept JPEGs included, the model loaded once); against the bare forward: {fps['frames'] / fps['forward']:.3f} "
              "(target >= 0.8)")


if __name__ == "__main__":
    main()
