"""What each cached training view buys the quick profile's deep rows: pooled F1 / accuracy with 1 to 4 views.

    python benchmarks/quick_views.py [--views 1,2,3,4] [--methods resnet18,painseeker-noprsc,painseeker,lite0-linear,painseeker-lite0]

Every row runs through `rb.run` with `--set views=V` on the replica (seed 0); the features of views 1..4 are
computed once (view v is the same whichever V asks for it) and the time of one view of each backbone is
reported, so the cost of a view stands beside what it buys.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--views", default="1,2,3,4")
    ap.add_argument("--methods", default="resnet18,painseeker-noprsc,painseeker,lite0-linear,painseeker-lite0")
    ap.add_argument("--data", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="other settings for every row, e.g. crop_size=160")
    args = ap.parse_args()
    import ratspain_bench as rb
    from ratspain_bench.cli.common import parse_overrides
    from ratspain_bench.evaluation.configure import configure

    extra = parse_overrides(args.set)
    views = [int(v) for v in args.views.split(",")]
    methods = args.methods.split(",")
    runs = Path(tempfile.mkdtemp(prefix="quick-views-"))
    rows, cost = [], {}
    try:
        for v in sorted(views, reverse=True):  # the most views first: it fills the feature cache for the others
            for m in methods:
                model = configure(rb.get_method(m), "quick")["model"]
                t = time.perf_counter()
                r = rb.run([m], args.data, runs_dir=runs, set={**extra, "views": str(v)})
                if v == max(views) and model not in cost:
                    cost[model] = (time.perf_counter() - t) / (v + 1)  # about one view's share of that first run
                row = r.table.iloc[0]
                rows.append((m, v, row["pooled_f1"], row["pooled_accuracy"]))
                print(f"{m:<20} views {v}: pooled F1 {row['pooled_f1']:.4f}, accuracy {100 * row['pooled_accuracy']:.2f}%", flush=True)
    finally:
        shutil.rmtree(runs, ignore_errors=True)
    print("\n| method | " + " | ".join(f"{v} view{'s' if v > 1 else ''}" for v in sorted(views)) + " |")
    print("|---|" + "---|" * len(views))
    for m in methods:
        cells = {v: f"{f1:.4f}/{100 * acc:.2f}" for mm, v, f1, acc in rows if mm == m}
        print(f"| {m} | " + " | ".join(cells[v] for v in sorted(views)) + " |")
    for model, c in cost.items():
        print(f"one view of {model} features for every image: about {c:.0f} s")


if __name__ == "__main__":
    main()
