"""Time the submission template under LORO on the replica: sandboxed (one bubblewrap worker per fold, as
every outside method runs) against in-process (the same folder trusted), as a user runs it.

    python benchmarks/sandbox_overhead.py [--data D] [--repeats 3]

Each measurement is `rb.run(["hog-logreg"], ...)` in a fresh Python process with a fresh runs folder (so
both modes pay their own imports and MLflow set-up), timed inside that process; the modes alternate and
the best of `--repeats` is reported. Predictions must be identical.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1] / "submissions" / "_template"
RUN = """
import json, sys, time
import ratspain_bench as rb
start = time.perf_counter()
r = rb.run(["hog-logreg"], sys.argv[1] if sys.argv[1] != "-" else None, runs_dir=sys.argv[2])
print(json.dumps({"seconds": time.perf_counter() - start, "status": r.table.loc[0, "status"], "error": r.table.loc[0, "error"],
                  "predictions": r.results[0].predictions and str(r.results[0].predictions)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="dataset (default: the synthetic replica)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from ratspain_bench import api
    from ratspain_bench.evaluation.sandbox import unavailable

    if unavailable():
        raise SystemExit(f"no sandbox here: {unavailable()}")
    api.load_dataset(args.data)  # renders the replica once, outside the timings
    tmp = Path(tempfile.mkdtemp(prefix="sandbox-bench-"))
    shutil.copytree(TEMPLATE, tmp / "submissions" / "hog-logreg")
    env = {**os.environ, "RATSPAIN_SUBMISSIONS_DIR": str(tmp / "submissions")}
    env.pop("MLFLOW_TRACKING_URI", None)
    times: dict[str, list[float]] = {"in-process": [], "sandboxed": []}
    preds = {}
    try:
        for i in range(args.repeats):
            for mode in times:
                e = {**env, "RATSPAIN_TRUST": "hog-logreg" if mode == "in-process" else ""}
                r = subprocess.run([sys.executable, "-c", RUN, args.data or "-", str(tmp / f"runs-{mode}-{i}")], env=e,
                                   capture_output=True, text=True, check=True)
                out = json.loads(r.stdout.strip().splitlines()[-1])
                assert out["status"] == "complete", out["error"]
                times[mode].append(out["seconds"])
                preds.setdefault(mode, Path(out["predictions"]).read_text().splitlines())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    column = lambda lines: [line.split(",")[:4] for line in lines]  # noqa: E731  image, subject, y_true, y_pred
    assert column(preds["in-process"]) == column(preds["sandboxed"]), "sandboxed and in-process predictions differ"
    inproc, sandboxed = min(times["in-process"]), min(times["sandboxed"])
    print(f"submission template (HOG + logistic regression, 64 px) under LORO, {os.cpu_count()} cores; runs: "
          + ", ".join(f"{k} {', '.join(f'{t:.1f}' for t in v)} s" for k, v in times.items()))
    print(f"in-process (trusted) : {inproc:6.1f} s")
    print(f"sandboxed            : {sandboxed:6.1f} s   (one bubblewrap worker per fold)")
    print(f"overhead             : {sandboxed - inproc:+6.1f} s = {100 * (sandboxed / inproc - 1):+.1f}% of in-process, "
          f"{(sandboxed - inproc) / 6:+.2f} s per fold   targets < 10% and < 1 s per fold")
    print("predictions identical: yes")


if __name__ == "__main__":
    main()
