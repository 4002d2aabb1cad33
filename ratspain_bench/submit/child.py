"""The child process of `submit validate`: imports and runs a submitted method under limits.

`python -m ratspain_bench.submit.child TASK ARGS_JSON RESULT_FILE`; TASK is `import` or `run`.
Each finished check is appended to RESULT_FILE as one JSON line as soon as it is known, and each
stage writes `{"stage": name}` first, so the parent can tell where a child that was killed (time or
memory limit, crash) stopped.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path

import numpy as np

PRED_MESSAGES = {
    "must be 1-d of one length": "shape",
    "predicted labels must be 0 or 1": "labels",
    "scores must be probabilities": "probabilities",
}
FIX = {
    "shape": "return Predictions(labels, scores) with two 1-d arrays of len(test) entries, one per test image, in TestSet order",
    "labels": "return hard labels 0 (no pain) or 1 (pain), e.g. (prob >= 0.5).astype(int)",
    "probabilities": "return scores = the probability of pain in [0, 1] (e.g. predict_proba(X)[:, 1] or a sigmoid), never logits or NaN",
    "predict_type": "return ratspain_bench.methods.Predictions(labels=..., scores=...) from predict()",
    "determinism": "derive every random choice from self.context.seed (np.random.default_rng(seed), random_state=seed, "
                   "torch.manual_seed(seed)); do not use unseeded np.random / random / time",
}


class Out:
    def __init__(self, path: str):
        self.path = path

    def write(self, obj: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(obj, default=str) + "\n")

    def check(self, name: str, status: str, message: str, fix: str = "") -> None:
        self.write({"check": name, "status": status, "message": message, "fix": fix})

    def stage(self, name: str) -> None:
        self.write({"stage": name})


def where(e: BaseException, folder: Path) -> str:
    """`ExcType: message (at file:line in function)`, the frame being the last one in the submission's folder."""
    frames = traceback.extract_tb(e.__traceback__)
    mine = [f for f in frames if str(Path(f.filename).resolve()).startswith(str(folder.resolve()))]
    f = (mine or frames or [None])[-1]
    at = f" (at {Path(f.filename).name}:{f.lineno} in {f.name})" if f is not None else ""
    msg = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {msg}{at}"[:600]


def load_class(folder: Path, entry_point: str):
    module, _, attr = entry_point.partition(":")
    if (folder / f"{module.replace('.', '/')}.py").is_file():
        from ..methods.registry import submission_loader

        return submission_loader(folder, entry_point)()
    return getattr(importlib.import_module(module), attr)


def do_import(args: dict, out: Out) -> None:
    from ..methods.base import Method, config_params, make_config

    folder = Path(args["folder"])
    out.stage("import")
    t0 = time.perf_counter()
    try:
        cls = load_class(folder, args["entry_point"])
    except ModuleNotFoundError as e:
        out.check("import", "FAIL", where(e, folder),
                  f"install {e.name!r} in the benchmark's environment (and list it in your README), or do not import it")
        return
    except SyntaxError as e:
        out.check("import", "FAIL", f"SyntaxError: {e.msg} (at {Path(e.filename or '?').name}:{e.lineno})", "fix the syntax error")
        return
    except AttributeError as e:
        out.check("import", "FAIL", where(e, folder), f"check entry_point {args['entry_point']!r}: the module must define that class")
        return
    except BaseException as e:  # anything the module does at import time
        out.check("import", "FAIL", where(e, folder), "importing the module must not fail: move work out of module level into fit()")
        return
    out.check("import", "PASS", f"imported {args['entry_point']} in {time.perf_counter() - t0:.1f} s (child process)")
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        out.check("interface.class", "FAIL", f"{args['entry_point']} is not a subclass of ratspain_bench.methods.Method",
                  "write `class MyMethod(Method):` with `from ratspain_bench.methods import Method`")
        return
    missing = [m for m in ("fit", "predict") if getattr(cls, m) is getattr(Method, m)]
    if missing:
        out.check("interface.class", "FAIL", f"{cls.__name__} does not implement {', '.join(missing)}",
                  "define fit(self, train) and predict(self, test) -> Predictions")
        return
    config_cls = getattr(cls, "Config", None)
    if config_cls is None or not dataclasses.is_dataclass(config_cls):
        out.check("interface.class", "FAIL", f"{cls.__name__}.Config is missing or not a dataclass",
                  "add `Config = MyConfig` where MyConfig is a @dataclass(frozen=True) of the method's parameters")
        return
    out.check("interface.class", "PASS", f"{cls.__name__}(Method) with Config {config_cls.__name__}")
    try:
        cfg = make_config(config_cls, None, **args.get("config", {}))
    except (KeyError, TypeError, ValueError) as e:
        out.check("interface.config", "FAIL", f"[config] does not fit {config_cls.__name__}: {e.args[0] if e.args else e}",
                  f"use only fields of {config_cls.__name__} in [config]: {', '.join(f.name for f in dataclasses.fields(config_cls))}")
        return
    params = config_params(cfg)
    bad = [n for n in args.get("search_space", []) if n not in params]
    if bad:
        out.check("interface.config", "FAIL", f"[search_space] names {', '.join(bad)}, not fields of {config_cls.__name__}",
                  f"search only Config fields: {', '.join(params)}")
        return
    out.check("interface.config", "PASS", f"config {', '.join(f'{k}={v}' for k, v in params.items())}")


def _classify(e: BaseException) -> str | None:
    if isinstance(e, ValueError):
        for text, kind in PRED_MESSAGES.items():
            if text in str(e):
                return kind
    return None


def _fit_predict(cls, cfg, ctx, train, test, folder: Path, out: Out, prefix: str, data_dir: str):
    """Fit and predict one fold; on failure write the check that says what to fix and return None."""
    method = cls(cfg, ctx)
    try:
        method.fit(train)
    except BaseException as e:
        _fail_exc(out, f"{prefix}.fit", e, folder, data_dir, "fit(train) raised")
        return None
    try:
        pred = method.predict(test)
    except BaseException as e:
        kind = _classify(e)
        if kind:
            out.check(f"interface.{kind}", "FAIL", f"predict(test) built invalid Predictions: {where(e, folder)}", FIX[kind])
        else:
            _fail_exc(out, f"{prefix}.predict", e, folder, data_dir, "predict(test) raised")
        return None
    return pred


def _fail_exc(out: Out, name: str, e: BaseException, folder: Path, data_dir: str, what: str) -> None:
    if isinstance(e, MemoryError):
        out.check(name, "FAIL", f"{what} MemoryError: the memory limit was exceeded", "use less memory (smaller images, batches or features)")
    elif isinstance(e, OSError) and (data_dir in str(e) or "manifest" in str(e)):
        out.check("loro.data_access", "FAIL", f"{what} {where(e, folder)}: the method read the dataset from disk",
                  "use only the TrainSet/TestSet arguments; the harness hides the data files and holds the test labels")
    else:
        out.check(name, "FAIL", f"{what} {where(e, folder)}", "make it work on the tiny dataset; run the method by hand on TrainSet/TestSet to debug")


def _check_predictions(pred, n: int, out: Out, report: bool) -> bool:
    from ..methods.base import Predictions

    if not isinstance(pred, Predictions):
        out.check("interface.predict_type", "FAIL", f"predict returned {type(pred).__name__}, not Predictions", FIX["predict_type"])
        return False
    labels, scores = np.asarray(pred.labels), np.asarray(pred.scores, dtype=float)
    if labels.shape != (n,) or scores.shape != (n,):
        out.check("interface.shape", "FAIL", f"predict returned labels {labels.shape} and scores {scores.shape} for {n} test images", FIX["shape"])
        return False
    if not np.isin(labels, (0, 1)).all():
        out.check("interface.labels", "FAIL", f"labels outside {{0, 1}}: {sorted(set(labels.tolist()) - {0, 1})[:5]}", FIX["labels"])
        return False
    if np.isnan(scores).any() or scores.min(initial=0) < 0 or scores.max(initial=0) > 1:
        out.check("interface.probabilities", "FAIL", f"scores range [{np.nanmin(scores):.3g}, {np.nanmax(scores):.3g}] or NaN", FIX["probabilities"])
        return False
    if report:
        out.check("interface.predict_type", "PASS", "predict returned Predictions")
        out.check("interface.shape", "PASS", f"{n} labels and {n} scores for {n} test images")
        out.check("interface.labels", "PASS", f"labels in {{0, 1}} (counts {np.bincount(labels, minlength=2).tolist()})")
        out.check("interface.probabilities", "PASS", f"scores in [0, 1] (range {scores.min():.3f} to {scores.max():.3f})")
    return True


def do_run(args: dict, out: Out) -> None:
    from .. import metrics
    from ..data import load_dataset
    from ..data.cache import load_images
    from ..methods.base import Context, image_size, make_config
    from ..protocol import leave_one_subject_out
    from ..runner import split

    folder, data_dir, seed = Path(args["folder"]), args["data"], int(args.get("seed", 0))
    cls = load_class(folder, args["entry_point"])
    cfg = make_config(cls.Config, None, **args.get("config", {}))
    out.stage("data")
    dataset = load_dataset(data_dir)
    images, keys = load_images(dataset, image_size(cfg))
    images = np.array(images)  # in memory: the files are hidden next
    hidden = f"{data_dir}.hidden"
    os.rename(data_dir, hidden)  # the method gets TrainSet/TestSet only; reading the data folder fails
    folds = leave_one_subject_out(dataset.table["subject"], dataset.table["image"])
    work = Path(args["work"])

    def ctx(tag: str) -> Context:
        d = work / tag
        d.mkdir(parents=True, exist_ok=True)
        return Context(seed=seed, device="cpu", profile="quick", cache_dir=work / "cache", work_dir=d)

    out.stage("interface")
    train, test = split(dataset, images, keys, folds[0])
    t0 = time.perf_counter()
    pred = _fit_predict(cls, cfg, ctx("interface"), train, test, folder, out, "interface", data_dir)
    if pred is None:
        return
    out.check("interface.fit", "PASS", f"fit on {len(train)} images of rats {', '.join(sorted(set(train.subjects)))} "
                                       f"and predict on {len(test)} of rat {folds[0].subject} in {time.perf_counter() - t0:.1f} s")
    if not _check_predictions(pred, len(test), out, report=True):
        return

    out.stage("determinism")
    again = _fit_predict(cls, cfg, ctx("determinism"), train, test, folder, out, "interface.determinism", data_dir)
    if again is None or not _check_predictions(again, len(test), out, report=False):
        return
    differ = int((np.asarray(again.labels) != np.asarray(pred.labels)).sum())
    gap = float(np.max(np.abs(np.asarray(again.scores, float) - np.asarray(pred.scores, float)), initial=0.0))
    if differ or gap > 1e-6:
        out.check("interface.determinism", "FAIL", f"two runs with seed {seed} disagree: {differ}/{len(test)} labels differ, "
                                                   f"scores differ by up to {gap:.3g}", FIX["determinism"])
        return
    out.check("interface.determinism", "PASS", f"two fits with seed {seed} gave identical predictions")

    out.stage("loro")
    t0 = time.perf_counter()
    ys, ps, ss = [], [], []
    for f in folds:
        train, test = split(dataset, images, keys, f)
        pred = _fit_predict(cls, cfg, ctx(f"fold-{f.subject}"), train, test, folder, out, "loro", data_dir)
        if pred is None or not _check_predictions(pred, len(test), out, report=False):
            return
        ys.append(dataset.table["label"].to_numpy()[f.test])
        ps.append(np.asarray(pred.labels))
        ss.append(dataset.table["subject"].to_numpy()[f.test])
    s = metrics.score(np.concatenate(ys), np.concatenate(ps), np.concatenate(ss))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.check("loro.smoke", "PASS", f"{len(folds)} leave-one-rat-out folds on a tiny replica ({len(dataset)} images) in "
                                    f"{time.perf_counter() - t0:.1f} s, peak memory {peak:.0f} MiB; pooled F1 {s['pooled']['f1']:.3f} "
                                    "(tiny data: the number means nothing)")
    out.check("loro.labels", "PASS", "the method saw TestSet (images, subjects, keys; no labels) with the data folder hidden; "
                                     "the harness scored its predictions")


def main(argv=None) -> int:
    task, args_json, result = (argv or sys.argv[1:])[:3]
    args = json.loads(args_json)
    out = Out(result)
    try:
        {"import": do_import, "run": do_run}[task](args, out)
    except BaseException as e:  # a harness-side failure: reported, never a silent pass
        out.check(f"harness.{task}", "FAIL", f"{type(e).__name__}: {e}", "report this to the benchmark maintainers with the traceback below")
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
