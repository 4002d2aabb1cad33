"""What `predict --by subject,session` adds to `predict` on the same frames.

    python benchmarks/predict_by.py [--seconds 300] [--per-minute 60] [--repeats 3] [--work DIR]

Setup (kept in --work and reused): the synthetic clips (`synth --video`: 12 clips, 2 groups x 3 rats x pre/post,
`--seconds` each), their frames (`frames --per-minute N --crop 20,0,120,120`; the defaults give 300 frames a clip,
3,600 in all: as many as the paper's rule, five a minute, keeps from twelve 1-h videos), and an LBP-SVM
(lbp-r1p8-8x8, the fastest method to score, so the worst case for the ratio) trained on a 64 px replica.

Timed in this process, alternating, after one warm-up of each (so both find their libraries imported):
(a) `predict MODEL frames/manifest.csv --out A/scores.csv`, (b) the same with `--by subject,session`, which also
writes summary.csv, frames.csv, a time course per animal, the group comparison and report.html. Printed: the median
of each, (b)/(a) (target: under 1.05), and what a fresh process pays once for the libraries (b) imports on top.
What --by adds is about fixed for a given number of animals and sessions (figures, statistics), so the ratio is
largest for the fastest model: this LBP-SVM scores ~700 frames/s here, a deep model on a CPU a few dozen.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ratspain_bench.cli import main


def setup(work: Path, seconds: float, per_minute: int) -> tuple[Path, Path]:
    from ratspain_bench import api
    from ratspain_bench.video.synth import render_videos

    clips = work / f"clips-{seconds:g}s"
    if not (clips / "videos.csv").is_file():
        t = time.perf_counter()
        render_videos(clips, seconds=seconds)
        print(f"rendered 12 clips of {seconds:g} s in {time.perf_counter() - t:.0f} s")
    frames = work / f"frames-{seconds:g}s-{per_minute}"
    manifest = api.frames(None, frames, per_minute=per_minute, crop=(20, 0, 120, 120), sidecar=clips / "videos.csv")
    model = work / "model"
    if not (model / "MLmodel").is_file():
        counts = {str(i): {"no_pain": 30, "moderate": 30, "severe": 4} for i in range(1, 7)}
        if not (work / "faces" / "manifest.csv").is_file():
            assert main(["synth", str(work / "faces"), "--size", "64", "--per-subject-counts", json.dumps(counts)]) == 0
        assert main(["train", "--method", "lbp-r1p8-8x8", "--data", str(work / "faces"), "--set", "image_size=64",
                     "--out", str(model), "--runs-dir", str(work / "runs")]) == 0
    return model, manifest


def timed(args: list[str]) -> float:
    t = time.perf_counter()
    assert main(args) == 0, args
    return time.perf_counter() - t


def import_cost(extra: str) -> float:
    """Seconds a fresh interpreter spends importing what `--by` needs beyond plain predict's modules."""
    code = ("import time, ratspain_bench.cli.predict, ratspain_bench.model.saved, sklearn.svm; t = time.perf_counter(); "
            f"{extra}; print(time.perf_counter() - t)")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main_() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--per-minute", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ratspain-predict-by")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RATSPAIN_CACHE_DIR", str(a.work / "cache"))
    model, manifest = setup(a.work, a.seconds, a.per_minute)
    n = len(manifest.read_text().splitlines()) - 1
    common = ["predict", str(model), str(manifest), "--quiet", "--runs-dir", str(a.work / "runs")]
    plain = common + ["--out", str(a.work / "plain" / "scores.csv")]
    by = common + ["--by", "subject,session", "--out", str(a.work / "by" / "scores.csv")]
    timed(plain), timed(by)  # warm-up: imports, the model's first load
    t_plain, t_by = [], []
    for _ in range(a.repeats):
        t_plain.append(timed(plain))
        t_by.append(timed(by))
    p, b = statistics.median(t_plain), statistics.median(t_by)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"{n} frames of 12 clips; {os.cpu_count()} cores ({cpu})")
    print(f"predict                {p:6.2f} s  ({n / p:.0f} frames/s)")
    print(f"predict --by           {b:6.2f} s  ratio {b / p:.3f} (target < 1.05); +{b - p:.2f} s")
    extra = import_cost("import ratspain_bench.video.report, ratspain_bench.video.groups, matplotlib.figure, "
                        "statsmodels.regression.mixed_linear_model")
    print(f"a fresh process's imports for --by: +{extra:.2f} s once")


if __name__ == "__main__":
    main_()
