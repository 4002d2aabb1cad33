"""`ratspain-bench predict` throughput against the bare method's `predict` on the same decoded arrays, and its
memory over a large folder.

    python benchmarks/predict_throughput.py [--methods lbp-r1p8-8x8,timm:resnet18] [--n 512] [--repeats 3] [--big 20000]

For each method (quick profile, seed 0, on the replica): `rb.train` saves a model; then, in this process and
alternating, (a) the loaded method's `predict` on the n images already decoded (`TestSet` of arrays, what the
method costs by itself) and (b) `ratspain-bench predict MODEL FOLDER --out CSV` on the same n image files (read,
decode, batch, score, write the CSV). Best of `--repeats`; the ratio is (b)'s images/s over (a)'s, and the
labels must be identical. Then, for the first method, the command runs in a fresh process over a folder of
`--big` images (links to the replica's files) and over a tenth of it, and each process's peak RSS is printed:
flat memory means the two agree, whatever the number of images.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def link_folder(files: list[Path], n: int, folder: Path) -> Path:
    """`n` links to `files` (cycled), ten per sub-folder of 1,000, with distinct names."""
    for i in range(n):
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        os.symlink(files[i % len(files)], sub / f"{i:06d}{files[i % len(files)].suffix}")
    return folder


# Linux carries a forked child's pre-exec high-water mark (the parent's pages it shares) into its ru_maxrss: a
# predict forked from this (large, model-holding) process would report this process's size. So a small launcher
# process starts it and reports its peak RSS (with its own children's) and time.
LAUNCHER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
_, status, usage = os.wait4(p.pid, 0)
print(json.dumps({"rc": os.waitstatus_to_exitcode(status), "maxrss_kb": usage.ru_maxrss,
                  "seconds": time.perf_counter() - start, "stderr": p.stderr.read().decode()[-2000:]}))
"""


def peak_rss_mb(model: Path, folder: Path, out: Path) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of `ratspain-bench predict MODEL FOLDER` in a fresh process (started by `LAUNCHER`)."""
    cmd = [sys.executable, "-m", "ratspain_bench", "predict", str(model), str(folder), "--out", str(out), "--quiet"]
    r = json.loads(subprocess.run([sys.executable, "-c", LAUNCHER, *cmd], capture_output=True, text=True, check=True).stdout)
    if r["rc"] != 0:
        sys.exit(f"predict failed: {r['stderr']}")
    return r["maxrss_kb"] / 1024, r["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="lbp-r1p8-8x8,timm:resnet18")
    ap.add_argument("--n", type=int, default=512, help="images timed per method")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--big", type=int, default=20000, help="images of the memory run (0: skip it)")
    args = ap.parse_args()

    import ratspain_bench as rb
    from ratspain_bench.cli import main as cli
    from ratspain_bench.methods.base import TestSet
    from ratspain_bench.model.predict import read_image

    work = Path(tempfile.mkdtemp(prefix="predict-bench-"))
    dataset = rb.load_dataset(None)
    files = [Path(f) for f in dataset.table["file"]]
    subset = link_folder(files, args.n, work / "subset")
    timed = sorted(p for p in subset.rglob("*") if p.is_file())
    print(f"{os.cpu_count()} CPU cores; {args.n} replica images per timing; best of {args.repeats}")
    models = {}
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        out = work / name.replace(":", "_")
        start = time.perf_counter()
        model = rb.train(name, None, out=out, runs_dir=work / "runs", device="cpu")
        models[name] = out
        print(f"\n{name}: trained in {time.perf_counter() - start:.1f} s; image_size {model.image_size}, batch {model.method.predict_batch}")
        decoded = [read_image(p, model.image_size) for p in timed]
        test = TestSet(np.stack([a for _, a in decoded]), np.full(len(decoded), ""), tuple(k for k, _ in decoded))
        bare, tool = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            ref = model.method.predict(test)
            bare.append(time.perf_counter() - t)
            t = time.perf_counter()
            assert cli(["predict", str(out), str(subset), "--out", str(work / "scores.csv"), "--quiet"]) == 0
            tool.append(time.perf_counter() - t)
        got = pd.read_csv(work / "scores.csv")
        same = (got["pain"].to_numpy() == np.asarray(ref.labels)).mean()
        b, c = args.n / min(bare), args.n / min(tool)
        print(f"  bare predict on decoded arrays: {b:.1f} img/s   predict command (files -> CSV): {c:.1f} img/s   "
              f"ratio {c / b:.3f}   labels identical: {100 * same:.1f}%")
    if args.big:
        name = next(iter(models))
        big = link_folder(files, args.big, work / "big")
        small = link_folder(files, args.big // 10, work / "small")
        for folder, n in ((small, args.big // 10), (big, args.big)):
            rss, seconds = peak_rss_mb(models[name], folder, work / "big.csv")
            print(f"\n{name}: predict over {n} images in {seconds:.1f} s ({n / seconds:.1f} img/s), peak RSS {rss:.0f} MiB")
    print(f"\n(work folder {work})")


if __name__ == "__main__":
    main()
