"""Time the six-configuration LBP-SVM grid under LORO: cold cache, warm cache, and a plain loop.

The plain loop is the reference: for every configuration and fold it recomputes the LBP features of
the fold's images with scikit-image and fits `SVC(kernel="linear", C=1)` on them. The harness path is
`run`'s fold path (`evaluation.fold.run_fold`, job folders included) with the registered `LbpSvm`, which
computes each code image once per (image, radius), derives every grid from it, and shares Gram blocks
across folds. Both run in this process on the same images; predictions must agree.

    python benchmarks/lbp_grid.py [--data D] [--plain-folds 6]
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from skimage.feature import local_binary_pattern
from sklearn.svm import SVC

from ratspain_bench import api
from ratspain_bench.data.cache import load_images
from ratspain_bench.evaluation.fold import FoldTask, read_fold, run_fold
from ratspain_bench.features.lbp import gray, grid_histograms
from ratspain_bench.methods import lbp_svm
from ratspain_bench.methods.base import config_params
from ratspain_bench.protocols import leave_one_subject_out

GRID = api.suites()["lbp"]


def harness(dataset, images, jobs: Path) -> dict:
    """All six configurations x all folds through `run`'s fold path (job folders under `jobs`)."""
    folds = leave_one_subject_out(dataset.table["subject"])
    out = {}
    for name in GRID:
        spec = api.get_method(name)
        params = config_params(spec.config())
        preds = []
        for fold in folds:
            run_fold(FoldTask(spec, params, fold, jobs / name / fold.subject), dataset, images)
            preds.append(read_fold(jobs / name / fold.subject)[0]["y_pred"].to_numpy())
        out[name] = np.concatenate(preds)
    return out


def plain(dataset, images, n_folds: int) -> dict:
    """Reference: features recomputed per configuration and fold, linear-kernel SVM on features."""
    folds = leave_one_subject_out(dataset.table["subject"])[:n_folds]
    labels = dataset.table["label"].to_numpy()
    out = {}
    for name in GRID:
        cfg = api.get_method(name).config()
        preds = []
        for fold in folds:
            def feats(idx):
                codes = np.stack([local_binary_pattern(gray(images[i]), cfg.points, cfg.radius, cfg.variant) for i in idx])
                return grid_histograms(codes.astype(np.uint8), cfg.grid, 59)
            svm = SVC(kernel="linear", C=cfg.C).fit(feats(fold.train), labels[fold.train])
            preds.append(svm.predict(feats(fold.test)))
        out[name] = np.concatenate(preds)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="dataset (default: the synthetic replica)")
    ap.add_argument("--plain-folds", type=int, default=6, help="folds of the plain loop to time (6 = all)")
    args = ap.parse_args()
    dataset = api.load_dataset(args.data)
    images = np.asarray(load_images(dataset, 224)[0])
    tmp = Path(tempfile.mkdtemp(prefix="lbp-bench-"))
    real_cache = os.environ.get("RATSPAIN_CACHE_DIR")
    os.environ["RATSPAIN_CACHE_DIR"] = str(tmp / "cache")  # cold LBP codes (the images are already decoded above)
    try:
        t = time.perf_counter()
        cold = harness(dataset, images, tmp / "jobs-cold")
        t_cold = time.perf_counter() - t
        lbp_svm._FEATURES.clear()
        lbp_svm._GRAM.clear()
        t = time.perf_counter()
        warm = harness(dataset, images, tmp / "jobs-warm")
        t_warm = time.perf_counter() - t
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if real_cache is None:
            os.environ.pop("RATSPAIN_CACHE_DIR")
        else:
            os.environ["RATSPAIN_CACHE_DIR"] = real_cache
    assert all((cold[n] == warm[n]).all() for n in GRID)
    t = time.perf_counter()
    ref = plain(dataset, images, args.plain_folds)
    t_plain = time.perf_counter() - t
    n_ref = len(next(iter(ref.values())))
    agree = np.mean([(cold[n][:n_ref] == ref[n]).mean() for n in GRID])
    scale = len(leave_one_subject_out(dataset.table["subject"])) / args.plain_folds
    print(f"images: {len(dataset)}, configurations: {len(GRID)}, folds: 6")
    print(f"harness, cold cache : {t_cold:7.1f} s")
    print(f"harness, warm cache : {t_warm:7.1f} s")
    print(f"plain loop          : {t_plain:7.1f} s over {args.plain_folds} fold(s)" + (f" (x{scale:.1f} -> {t_plain * scale:.0f} s for 6)" if scale != 1 else ""))
    print(f"speed-up vs plain   : cold {t_plain * scale / t_cold:.1f}x, warm {t_plain * scale / t_warm:.1f}x")
    print(f"prediction agreement with the plain loop: {100 * agree:.2f}%")


if __name__ == "__main__":
    main()
