"""Time a frozen-backbone PainSeeker LORO run (6 folds on the replica): cold cache, warm cache, and a
plain reference that recomputes backbone features for every fold (no cache shared across folds).

"warm" is the figure the issue targets (a LORO run on cached features, under 20 s on 2 CPU cores):
it is what each point of a sensitivity study costs once `run --suite quick` has filled the cache.
Every fold goes through `run`'s fold path (`evaluation.fold.run_fold`).

    python benchmarks/frozen_loro.py [--method painseeker] [--profile quick] [--plain-folds 1] [--set NAME=VALUE ...]
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="dataset (default: the synthetic replica)")
    ap.add_argument("--method", default="painseeker")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--plain-folds", type=int, default=1, help="folds of the plain reference to time (its time is scaled to 6)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = ap.parse_args()

    from ratspain_bench import api
    from ratspain_bench.cli.common import parse_overrides
    from ratspain_bench.data.cache import load_images
    from ratspain_bench.engine import features
    from ratspain_bench.evaluation.fold import FoldTask, image_size, read_fold, run_fold
    from ratspain_bench.methods.base import config_params
    from ratspain_bench.metrics import accuracy, confusion, f1
    from ratspain_bench.protocols import leave_one_subject_out

    dataset = api.load_dataset(args.data)
    spec = api.get_method(args.method)
    params = config_params(spec.config(args.profile, finetune="frozen", **parse_overrides(args.set)))
    images = np.asarray(load_images(dataset, image_size(params))[0])
    folds = leave_one_subject_out(dataset.table["subject"])
    y = dataset.table["label"].to_numpy()
    tmp = Path(tempfile.mkdtemp(prefix="frozen-bench-"))
    real_cache = os.environ.get("RATSPAIN_CACHE_DIR")

    def loro(tag: str, n_folds: int = len(folds), fresh_each_fold: bool = False):
        """LORO through `run`'s fold path; features cached under tmp/<tag> (a fresh, empty cache per fold when asked)."""
        pred = np.full(len(y), -1)
        for fold in folds[:n_folds]:
            if fresh_each_fold:
                features._MEMORY.clear()
                features._LOADED.clear()
            os.environ["RATSPAIN_CACHE_DIR"] = str(tmp / tag / (fold.subject if fresh_each_fold else ""))
            job = tmp / f"jobs-{tag}" / fold.subject
            run_fold(FoldTask(spec, params, fold, job, seed=0, profile=args.profile), dataset, images)
            pred[fold.test] = read_fold(job)[0]["y_pred"].to_numpy()
        return pred

    try:
        features._MEMORY.clear()
        features._LOADED.clear()
        t = time.perf_counter()
        cold = loro("cache")
        t_cold = time.perf_counter() - t
        t = time.perf_counter()
        warm = loro("cache")
        t_warm = time.perf_counter() - t
        assert (cold == warm).all(), "warm and cold runs disagree"
        t = time.perf_counter()
        loro("plain", args.plain_folds, fresh_each_fold=True)
        t_plain = (time.perf_counter() - t) * len(folds) / args.plain_folds
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if real_cache is None:
            os.environ.pop("RATSPAIN_CACHE_DIR", None)
        else:
            os.environ["RATSPAIN_CACHE_DIR"] = real_cache
    cm = confusion(y, warm)
    print(f"{args.method} ({args.profile} profile, frozen {params['model']}, {params['crop_size']} px crops, {params['views']} views), "
          f"{len(dataset)} images, 6 folds, {os.cpu_count()} cores")
    print(f"cold cache (features computed)  : {t_cold:7.1f} s")
    print(f"warm cache (heads only)         : {t_warm:7.1f} s   target < 20 s")
    print(f"plain, features per fold       : {t_plain:7.1f} s" + (f" ({args.plain_folds} fold(s) timed, scaled to 6)" if args.plain_folds != len(folds) else ""))
    print(f"speed-up vs plain               : cold {t_plain / t_cold:.1f}x, warm {t_plain / t_warm:.1f}x")
    print(f"pooled F1 {f1(cm):.4f}, accuracy {accuracy(cm):.4f}")


if __name__ == "__main__":
    main()
