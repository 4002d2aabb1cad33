"""Time the paper's Figure 5 sensitivity study (15 grid points, each a 6-fold LORO run of PainSeeker)
on the built-in replica in frozen-backbone mode.

    python benchmarks/study_figure5.py [--data D] [--profile quick] [--jobs 2] [--set NAME=VALUE ...] [--out DIR]

Three timings, each through the same code as
    ratspain-bench study sensitivity --finetune frozen --jobs 2 [--set ...] --out DIR
1. cold: a fresh RATSPAIN_CACHE_DIR (images decoded and backbone features computed inside the
   timing), fresh runs folder and Optuna storage;
2. warm features: the backbone features cached (as after `ratspain-bench run --suite quick`, which
   shares them), a fresh runs folder and storage: every head is trained again;
3. resume: the same study started again: nothing left to do.
The replica is rendered (or copied from the cache) before the clock starts.
Target: the 15-point study under 5 minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="dataset (default: a private copy of the built-in replica)")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2: one per core, one torch thread each)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="fixed config settings, e.g. crop_size=136")
    ap.add_argument("--out", default="ratspain-runs/figure5", help="where the CSV, figure and timing.json go")
    ap.add_argument("--keep", action="store_true", help="keep the temporary cache and runs folders")
    args = ap.parse_args()

    from ratspain_bench.cli.common import parse_overrides
    from ratspain_bench.data.replica import default_replica

    fixed = parse_overrides(args.set)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="ratspain-fig5-"))
    data = args.data
    if data is None:  # a private copy, so nothing else sharing the cache can move it during the run
        data = str(tmp / "replica")
        shutil.copytree(default_replica(), data)
    prepare = time.perf_counter() - t0
    os.environ["RATSPAIN_CACHE_DIR"] = str(tmp / "cache")  # cold: decoded images and features inside the timing
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from ratspain_bench.data import load_dataset
    from ratspain_bench.study import SensitivityOptions, run_sensitivity

    out = Path(args.out)
    try:
        timings = {}
        for phase, runs in (("cold", "runs1"), ("warm_features", "runs2"), ("resume", "runs2")):
            opts = SensitivityOptions(method="painseeker", profile=args.profile, finetune="frozen", fixed=dict(fixed), runs_dir=tmp / runs,
                                      out_dir=out, jobs=args.jobs, quiet=False)
            start = time.perf_counter()
            dataset = load_dataset(data)
            res = run_sensitivity(dataset, opts)
            timings[phase] = time.perf_counter() - start
            print(f"{phase}: {timings[phase]:.1f} s (this process fitted {res.ran} points, complete={res.complete})", file=sys.stderr)
        import torch

        from ratspain_bench.methods.base import config_params
        from ratspain_bench.methods.registry import get_method

        cfg = config_params(get_method("painseeker").config(args.profile, **opts.fixed))
        record = {"points": len(res.rows), "images": len(dataset), "rats": dataset.table["subject"].nunique(),
                  "profile": args.profile, "jobs": args.jobs, "fixed": opts.fixed,
                  "config": {k: cfg[k] for k in ("model", "weights", "image_size", "crop_size", "epochs", "views", "batch_size", "finetune")},
                  **{f"{k}_seconds": round(v, 1) for k, v in timings.items()}, "replica_prepare_seconds": round(prepare, 1),
                  "notes": res.notes, "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                  "load_average_1min_at_end": os.getloadavg()[0], "torch": torch.__version__,
                  "rows": json.loads(res.rows.to_json(orient="records"))}
        (out / "timing.json").write_text(json.dumps(record, indent=1))
        for name in ("sensitivity.md", "sensitivity.json"):  # the storage lay in a temporary folder: not this machine's path
            (out / name).write_text((out / name).read_text().replace(str(tmp), "<temporary folder>"))
        print(res.rows.to_string(index=False))
        print(f"\nFigure 5 study ({len(res.rows)} points x {record['rats']} folds, frozen, {args.profile} profile, "
              f"{cfg['crop_size']} px crops, --jobs {args.jobs}) on {os.cpu_count()} cores: cold {timings['cold']:.1f} s "
              f"({timings['cold'] / 60:.1f} min), warm features {timings['warm_features']:.1f} s, resume {timings['resume']:.1f} s"
              f" -- target < 300 s cold: {'met' if timings['cold'] < 300 else 'MISSED'}")
        print(f"CSV {res.csv}, figure {res.png}, timing {out / 'timing.json'}")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
