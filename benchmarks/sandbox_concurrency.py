"""How many gVisor workers can run at once: K workers of the worked example (examples/hog-logreg), each a fold of the replica (rat 1
held out, 64 px), started together, against the same K one after the other; each worker's memory (its cgroup's
peak: the Sentry, the restored start-up and the fit) and the machine's.

    python benchmarks/sandbox_concurrency.py [--workers 1,2,4,8] [--kind runsc]

gVisor workers share no kernel state, so nothing but memory and cores limits how many run at once (bubblewrap
workers run one at a time per machine: `--kind bwrap` shows them queue). The snapshot of the start-up is made by
an untimed first worker.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hog-logreg"  # HOG + logistic regression
JOB: dict = {}  # what each forked worker process runs


def _one(_=None) -> dict:
    """One worker, in a process of its own (as a hosted worker or a harness runs it): its memory restored and waiting,
    and at its peak."""
    from ratspain_bench.evaluation import sandbox

    out = {}
    w = sandbox.Worker(JOB["spec"], "fold", JOB["request"], JOB["settings"])
    try:
        time.sleep(1.0)
        out["idle_mb"] = w.cgroup.peak_mb()
        w.run(JOB["arrays"])
        out["peak_mb"] = w.cgroup.peak_mb()
    finally:
        w.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="1,2,4,8")
    ap.add_argument("--kind", default="runsc")
    args = ap.parse_args()
    import numpy as np

    from ratspain_bench import api
    from ratspain_bench.data.cache import load_images
    from ratspain_bench.evaluation import outside, sandbox
    from ratspain_bench.evaluation.fold import split
    from ratspain_bench.methods.registry import submission_spec
    from ratspain_bench.protocols import leave_one_subject_out

    if sandbox.unavailable(args.kind):
        raise SystemExit(f"no {args.kind} here: {sandbox.unavailable(args.kind)}")
    spec = submission_spec(EXAMPLE)
    settings = sandbox.SandboxSettings(args.kind, threads=1)
    params = {"image_size": 64, "orientations": 9, "pixels_per_cell": 8, "cells_per_block": 2, "C": 1.0,
              "class_weight": "balanced", "max_iter": 2000}
    request = {"params": params, "seed": 0, "device": "cpu", "profile": "quick", "task": "binary"}
    dataset = api.load_dataset(None)
    images, _ = load_images(dataset, 64)
    fold = leave_one_subject_out(dataset.table["subject"], dataset.table["image"])[0]
    train, test = split(dataset, images, fold)
    arrays = {**outside.train_arrays(train), **outside.test_arrays(test)}

    JOB.update(spec=spec, request=request, settings=settings, arrays=arrays)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        pool.map(_one, [0])  # untimed: the snapshot, once per machine
    print(f"{args.kind} workers of the worked example (examples/hog-logreg), one LORO fold each ({len(train)} training, {len(test)} test "
          f"images, 64 px, 1 thread each), each in a process of its own; {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB")
    for k in [int(x) for x in args.workers.split(",")]:
        with ctx.Pool(1) as pool:
            t = time.perf_counter()
            pool.map(_one, range(k))
            serial = time.perf_counter() - t
        with ctx.Pool(k) as pool:
            t = time.perf_counter()
            outs = pool.map(_one, range(k), chunksize=1)
            together = time.perf_counter() - t
        idle = np.mean([o.get("idle_mb") or 0 for o in outs])
        peak = np.mean([o.get("peak_mb") or 0 for o in outs])
        print(f"K={k}: at once {together:6.1f} s, one after the other {serial:6.1f} s ({serial / together:.2f}x); "
              f"per worker: {idle:.0f} MiB restored and waiting, {peak:.0f} MiB peak")


if __name__ == "__main__":
    main()
