"""Where the time of `make demo` goes, stage by stage, cold, and the machine's ceiling for the dominant stage.

    python benchmarks/demo_stages.py [--out docs/demo-stages.json]

Stages, in the order `make demo` meets them, each timed in this process on an empty cache:
render (the replica), decode (images at 224 and 256 px), lbp codes + svm (the six LBP rows), features
<backbone> (the frozen backbone's region features for every image and view the quick suite needs),
heads <backbone> (the deep rows on cached features), leaderboard. Then, for each backbone, the ceiling:
a bare batched forward of the same model at the same size and batch under `torch.inference_mode` over
as many image-views, in the same run; "features / ceiling" says how close feature extraction comes.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="also write the table as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary cache and runs")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="demo-stages-"))
    os.environ["RATSPAIN_CACHE_DIR"] = str(tmp / "cache")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    import numpy as np
    import torch

    import ratspain_bench as rb
    from ratspain_bench.data.cache import load_images
    from ratspain_bench.evaluation.configure import configure
    from ratspain_bench.methods.base import Context, make_config

    stages: list[tuple[str, float]] = []

    def stage(name: str, fn):
        t = time.perf_counter()
        out = fn()
        stages.append((name, time.perf_counter() - t))
        print(f"{name:<28} {stages[-1][1]:7.1f} s", flush=True)
        return out

    runs = tmp / "runs"
    quick = rb.suites()["quick"]
    lbp = [m for m in quick if rb.get_method(m).family == "lbp"]
    deep = [m for m in quick if m not in lbp]
    dataset = stage("render replica", lambda: rb.load_dataset(None))
    stage("decode images", lambda: (load_images(dataset, 224), load_images(dataset, 256)))
    stage("lbp rows (codes + svm)", lambda: rb.run(lbp, dataset, runs_dir=runs))
    backbones: dict[str, list[str]] = {}
    for m in deep:
        backbones.setdefault(configure(rb.get_method(m), "quick")["model"], []).append(m)
    ceilings = {}
    for model, methods in backbones.items():
        spec = rb.get_method(methods[0])
        params = configure(spec, "quick")
        views = max(configure(rb.get_method(m), "quick")["views"] for m in methods)
        method = spec.load()(make_config(spec.load().Config, None, **params), Context(cache_dir=tmp / "cache"))
        images = np.asarray(load_images(dataset, params["image_size"])[0])
        n_views = len(images) * (views + 1)
        stage(f"features {model}", lambda: method.cached_features(dataset.keys, images, range(0, views + 1)))
        stage(f"heads {model} ({len(methods)} rows)", lambda: rb.run(methods, dataset, runs_dir=runs))
        ceilings[model] = (n_views, bare_forward(method, params, n_views, torch))
        print(f"  ceiling {model}: {n_views} image-views in {ceilings[model][1]:.1f} s", flush=True)
    stage("leaderboard", lambda: rb.leaderboard(tmp / "board", runs_dir=runs))
    total = sum(t for _, t in stages)
    rows = [{"stage": n, "seconds": round(t, 1), "share": round(t / total, 3)} for n, t in stages]
    for model, (n, t) in ceilings.items():
        feat = dict(stages)[f"features {model}"]
        rows.append({"stage": f"ceiling {model}", "seconds": round(t, 1), "image_views": n,
                     "features_over_ceiling": round(feat / t, 2)})
    info = {"cores": os.cpu_count(), "cpu": cpu_model(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d"), "total_seconds": round(total, 1), "rows": rows}
    print(f"\ntotal {total:.1f} s on {info['cores']} cores ({info['cpu']}), torch {info['torch']}")
    for r in rows:
        print(f"  {r['stage']:<28} {r['seconds']:7.1f} s" + (f"  features / ceiling = {r['features_over_ceiling']}"
                                                               if "features_over_ceiling" in r else f"  {100 * r['share']:5.1f}%"))
    if args.out:
        Path(args.out).write_text(json.dumps(info, indent=1) + "\n")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


def bare_forward(method, params: dict, n_views: int, torch) -> float:
    """The ceiling: the backbone alone on random uint8 batches already cropped, normalised inside, same batch size."""
    bb = method.build_backbone().eval()
    batch = method.predict_batch
    crop = params["crop_size"]
    x = torch.randint(0, 255, (batch, 3, crop, crop), dtype=torch.uint8).float().contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        bb(x[:2])  # warm-up
        t = time.perf_counter()
        done = 0
        while done < n_views:
            b = min(batch, n_views - done)
            bb(x[:b])
            done += b
        return time.perf_counter() - t


if __name__ == "__main__":
    main()
