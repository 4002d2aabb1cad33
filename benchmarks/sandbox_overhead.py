"""Time the worked example (examples/hog-logreg) under LORO on the replica: in each sandbox (one worker per fold, as every outside
method runs) against in-process (the same folder trusted), as a user runs it.

    python benchmarks/sandbox_overhead.py [--data D] [--repeats 3] [--kinds runsc,bwrap]

Each measurement is `rb.run(["hog-logreg"], ..., sandbox=KIND)` in a fresh Python process with a fresh runs folder (so
every mode pays its own imports and MLflow set-up), timed inside that process; the modes alternate and the best of
`--repeats` is reported. Predictions must be identical. A gVisor snapshot of the worker's start-up is made once per
machine (`runsc.template`): one untimed run makes it first, so the figures are those of every later run.
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

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hog-logreg"  # HOG + logistic regression
RUN = """
import json, sys, time
import ratspain_bench as rb
start = time.perf_counter()
kind = sys.argv[3]
r = rb.run(["hog-logreg"], sys.argv[1] if sys.argv[1] != "-" else None, runs_dir=sys.argv[2],
           sandbox=True if kind == "in-process" else kind)
print(json.dumps({"seconds": time.perf_counter() - start, "status": r.table.loc[0, "status"], "error": r.table.loc[0, "error"],
                  "predictions": r.results[0].predictions and str(r.results[0].predictions)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="dataset (default: the synthetic replica)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--kinds", default="runsc,bwrap", help="sandboxes to time against in-process")
    args = ap.parse_args()
    from ratspain_bench import api
    from ratspain_bench.evaluation.sandbox import unavailable

    kinds = [k for k in args.kinds.split(",") if not unavailable(k)]
    if not kinds:
        raise SystemExit(f"no sandbox here: {unavailable()}")
    api.load_dataset(args.data)  # renders the replica once, outside the timings
    tmp = Path(tempfile.mkdtemp(prefix="sandbox-bench-"))
    shutil.copytree(EXAMPLE, tmp / "submissions" / "hog-logreg")
    env = {**os.environ, "RATSPAIN_SUBMISSIONS_DIR": str(tmp / "submissions")}
    env.pop("MLFLOW_TRACKING_URI", None)
    times: dict[str, list[float]] = {m: [] for m in ["in-process", *kinds]}
    preds = {}

    def once(mode: str, runs: Path) -> dict:
        e = {**env, "RATSPAIN_TRUST": "hog-logreg" if mode == "in-process" else ""}
        r = subprocess.run([sys.executable, "-c", RUN, args.data or "-", str(runs), mode], env=e, capture_output=True,
                           text=True, check=True)
        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert out["status"] == "complete", out["error"]
        return out

    try:
        for kind in kinds:  # untimed: the snapshot of the worker's start-up, once per machine
            once(kind, tmp / f"warm-{kind}")
        for i in range(args.repeats):
            for mode in times:
                out = once(mode, tmp / f"runs-{mode}-{i}")
                times[mode].append(out["seconds"])
                preds.setdefault(mode, Path(out["predictions"]).read_text().splitlines())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    column = lambda lines: [line.split(",")[:4] for line in lines]  # noqa: E731  image, subject, y_true, y_pred
    for kind in kinds:
        assert column(preds["in-process"]) == column(preds[kind]), f"{kind} and in-process predictions differ"
    inproc = min(times["in-process"])
    print(f"worked example (HOG + logistic regression, 64 px) under LORO, {os.cpu_count()} cores; runs: "
          + ", ".join(f"{k} {', '.join(f'{t:.1f}' for t in v)} s" for k, v in times.items()))
    print(f"in-process (trusted) : {inproc:6.1f} s")
    for kind in kinds:
        best = min(times[kind])
        print(f"{kind:<21}: {best:6.1f} s   overhead {best - inproc:+6.1f} s = {100 * (best / inproc - 1):+.1f}% of in-process, "
              f"{(best - inproc) / 6:+.2f} s per fold")
    print("predictions identical: yes")


if __name__ == "__main__":
    main()
