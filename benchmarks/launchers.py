"""What each launcher costs: the LBP grid and a small frozen deep suite with `--jobs 1`, `--jobs 2` (local pool)
and the submitit local executor, one after the other in this process, each on a fresh runs folder with the
shared work (LBP codes, backbone features) already cached, so the figures compare the launchers alone.

    python benchmarks/launchers.py [--data DIR] [--deep painseeker,resnet18]

Prints seconds per configuration, the ratio against `--jobs 1`, and the overhead per fold job of each
launcher: (launcher time - jobs 1 time) / folds, where the jobs 1 run executes every fold in this process.
Predictions are checked identical across launchers.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="dataset (default: the replica)")
    ap.add_argument("--deep", default="painseeker,resnet18", help="frozen deep methods of the small deep suite")
    args = ap.parse_args()
    import pandas as pd

    import ratspain_bench as rb

    dataset = rb.load_dataset(args.data)
    suites = {"lbp grid": rb.suites()["lbp"], "deep (frozen)": args.deep.split(",")}
    launchers = {"jobs 1": dict(jobs=1), "jobs 2": dict(jobs=2), "submitit local": dict(launcher="submitit", cluster="local")}
    tmp = Path(tempfile.mkdtemp(prefix="launchers-"))
    try:
        for suite, methods in suites.items():
            rb.run(methods, dataset, runs_dir=tmp / "warm", jobs=1)  # fills the caches: what follows times the folds
            folds = len(methods) * dataset.table["subject"].nunique()
            times, preds = {}, {}
            for label, kw in launchers.items():
                t = time.perf_counter()
                r = rb.run(methods, dataset, runs_dir=tmp / f"{suite}-{label}".replace(" ", "_"), **kw)
                times[label] = time.perf_counter() - t
                assert not r.failed, [f.error for f in r.failed]
                preds[label] = r.predictions.sort_values(["method", "image"]).reset_index(drop=True)
            for label in launchers:
                pd.testing.assert_frame_equal(preds[label], preds["jobs 1"])
                extra = (times[label] - times["jobs 1"]) / folds
                print(f"{suite:<14} {label:<15} {times[label]:7.1f} s  x{times['jobs 1'] / times[label]:.2f} vs jobs 1   "
                      f"{extra:+.2f} s per fold job ({folds} folds)", flush=True)
            print(f"{suite}: predictions identical across launchers")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
