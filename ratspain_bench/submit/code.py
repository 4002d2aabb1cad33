"""Checks of a method submission's code: the fold path of `run`, sandboxed, on a tiny replica.

1. import (a sandboxed worker, time limit `import_timeout`): the module imports, the class is a
   `Method` with a dataclass `Config`, `[config]` and `[search_space]` name real fields;
2. on a tiny replica (3 rats, 30 images), through `evaluation.fold.run_fold` exactly as `run` calls it
   (one sandboxed worker per fold, `time_limit` per fold, `memory_mb` of memory counting shared
   mappings where a cgroup can be made): the interface (fit/predict, one 0/1 label and one
   probability of pain per test image), determinism (the same fold again gives the same
   predictions), and a full leave-one-rat-out smoke run.
Every verdict is computed here, from what the worker returned; the worker never sees a test label,
the dataset's files or this process.
"""
from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..evaluation.fold import FoldError, FoldTask, check_image_size, image_size, read_fold, run_fold
from ..evaluation.predictions import score_frame
from ..evaluation.outside import describe
from ..evaluation.sandbox import settings as sandbox_settings
from ..methods.registry import MethodSpec
from ..protocols import leave_one_subject_out
from .checks import FAIL, PASS, SKIP, Check, Report

RATSPAIN_IMAGES = 1138  # the paper's dataset: what a submission's image_size must fit for

TINY_COUNTS = {"1": {"no_pain": 5, "moderate": 5}, "2": {"no_pain": 5, "moderate": 4, "severe": 1}, "3": {"no_pain": 4, "moderate": 6}}
FIX = {
    "shape": "return Predictions(labels, scores) with two 1-d arrays of len(test) entries, one per test image, in TestSet order",
    "labels": "return hard labels 0 (no pain) or 1 (pain), e.g. (prob >= 0.5).astype(int)",
    "probabilities": "return scores = the probability of pain in [0, 1] (e.g. predict_proba(X)[:, 1] or a sigmoid), never logits or NaN",
    "predict_type": "return ratspain_bench.methods.Predictions(labels=..., scores=...) from predict()",
    "determinism": "derive every random choice from self.context.seed (np.random.default_rng(seed), random_state=seed, "
                   "torch.manual_seed(seed)); do not use unseeded np.random / random / time",
    "data_access": "use only the TrainSet/TestSet arguments: the sandbox shows your code nothing of the dataset, "
                   "and the harness holds the test labels",
}


def make_tiny_replica(out: Path, seed: int = 0, size: int = 64) -> Path:
    from ..data.synth import generate_replica

    generate_replica(out, seed=seed, size=size, counts=TINY_COUNTS, jobs=1)
    return out


def spec_of(folder: Path, meta: dict) -> MethodSpec:
    return MethodSpec(meta["name"], meta["name"], None, tuple((meta.get("config") or {}).items()), f"submission ({folder.name})",
                      kind="submission", folder=Path(folder).resolve(), meta=meta)


def _import_failure(report: Report, reason: str, entry_point: str, timeout: float) -> None:
    reason = reason.split("cannot load the method in its sandbox: ", 1)[-1]
    if reason.startswith("ModuleNotFoundError"):
        module = reason.split("'")[1] if "'" in reason else "?"
        report.add("import", FAIL, reason, f"install {module!r} in the benchmark's environment (and list it in your README), or do not import it")
    elif reason.startswith("SyntaxError") or "syntax error" in reason:
        report.add("import", FAIL, reason, "fix the syntax error")
    elif "is not a ratspain_bench.methods.Method subclass" in reason:
        report.add("import", PASS, f"imported {entry_point} (sandboxed worker)")
        report.add("interface.class", FAIL, reason, "write `class MyMethod(Method):` with `from ratspain_bench.methods import Method`")
    elif "time limit" in reason:
        report.add("import", FAIL, f"stopped during import: {reason}",
                   f"importing must take less than {timeout:.0f} s: do heavy work in fit(), not at import")
    elif "AttributeError" in reason or "cannot import" in reason:
        report.add("import", FAIL, reason, f"check entry_point {entry_point!r}: the module must define that class")
    else:
        report.add("import", FAIL, reason, "importing the module must not fail: move work out of module level into fit()")


def _interface(report: Report, spec: MethodSpec, info: dict) -> dict | None:
    """Checks of the class and its config from the worker's description; the resolved params, or None."""
    entry = spec.meta["entry_point"]
    report.add("import", PASS, f"imported {entry} in {info.get('import_seconds', 0):.1f} s (sandboxed worker)")
    missing = info.get("missing") or []
    if missing:
        report.add("interface.class", FAIL, f"{info.get('class', '?')} does not implement {', '.join(missing)}",
                   "define fit(self, train) and predict(self, test) -> Predictions")
        return None
    if not info.get("config_dataclass"):
        report.add("interface.class", FAIL, f"{info.get('class', '?')}.Config is missing or not a dataclass",
                   "add `Config = MyConfig` where MyConfig is a @dataclass(frozen=True) of the method's parameters")
        return None
    report.add("interface.class", PASS, f"{info.get('class')}(Method) with Config {info.get('config_class')}")
    params = info["configs"][0]
    if "error" in params and len(params) == 1:
        report.add("interface.config", FAIL, f"[config] does not fit the Config: {params['error']}",
                   f"use only fields of the Config in [config]: {', '.join(info.get('fields', []))}")
        return None
    bad = [n for n in (spec.meta.get("search_space") or {}) if n not in params]
    if bad:
        report.add("interface.config", FAIL, f"[search_space] names {', '.join(bad)}, not fields of the Config",
                   f"search only Config fields: {', '.join(params)}")
        return None
    report.add("interface.config", PASS, f"config {', '.join(f'{k}={v}' for k, v in params.items())}")
    return params


def _fold_failure(report: Report, stage: str, e: FoldError, settings: SandboxSettings) -> None:
    error = str(e)
    reason = error.split(": ", 1)[-1] if ", fold " in error else error
    if e.rule:
        report.add(f"interface.{e.rule}", FAIL, f"predict(test) returned invalid predictions: {reason.removeprefix('invalid predictions: ')}",
                   FIX[e.rule])
    elif reason.startswith(("FileNotFoundError", "PermissionError", "IsADirectoryError")):
        report.add("loro.data_access", FAIL, f"{reason}: the method read the dataset from disk", FIX["data_access"])
    elif "limit" in reason and "exceeded" in reason:
        report.add("loro.smoke" if stage == "loro" else f"interface.{'determinism' if stage == 'determinism' else 'fit'}", FAIL,
                   f"stopped during {stage}: {reason}",
                   f"each fold must finish within {settings.time_limit:.0f} s and {settings.memory_mb} MiB "
                   "(set --time-limit/--memory-limit when validating a larger method)")
    else:
        report.add("interface.fit" if stage != "loro" else "loro.smoke", FAIL, f"fit/predict raised {reason}",
                   "make it work on the tiny dataset; run the method by hand on TrainSet/TestSet to debug")


def _shape_checks(report: Report, frame, n: int) -> None:
    labels, scores = frame["y_pred"].to_numpy(), frame["score"].to_numpy(float)
    report.add("interface.predict_type", PASS, "predict returned Predictions")
    report.add("interface.shape", PASS, f"{n} labels and {n} scores for {n} test images")
    report.add("interface.labels", PASS, f"labels in {{0, 1}} (counts {np.bincount(labels, minlength=2).tolist()})")
    report.add("interface.probabilities", PASS, f"scores in [0, 1] (range {scores.min():.3f} to {scores.max():.3f})")


def check_code(report: Report, folder: Path, meta: dict, *, time_limit: float = 600, import_timeout: float = 120,
               memory_mb: int = 4096, seed: int = 0, sandbox: bool | str = True) -> None:
    from ..data import load_dataset
    from ..data.cache import load_images

    spec = spec_of(folder, meta)
    settings = sandbox_settings(sandbox, time_limit=time_limit, memory_mb=memory_mb or 1 << 20)
    try:
        info = describe(spec, None, [dict(spec.params)], replace(settings, time_limit=import_timeout))
    except InputError as e:
        _import_failure(report, str(e), meta["entry_point"], import_timeout)
        if not report.failed("interface"):
            report.add("interface", SKIP, "not run: the import checks failed")
        return
    info["import_seconds"] = info.pop("seconds")
    params = _interface(report, spec, info)
    if params is None:
        return
    try:  # what `run` decodes for it on RatsPain's 1,138 images
        size = check_image_size(spec.name, params, RATSPAIN_IMAGES, settings.memory_mb)
        report.add("config.image_size", PASS, f"image_size {size}: {RATSPAIN_IMAGES:,} images take "
                                              f"{RATSPAIN_IMAGES * size * size * 3 / 2**20:,.0f} MiB decoded")
    except InputError as e:
        report.add("config.image_size", FAIL, str(e), "use an image_size the worker can hold (the paper's is 224)")
        return
    with tempfile.TemporaryDirectory(prefix="ratspain-validate-") as tmp:
        work = Path(tmp)
        dataset = load_dataset(make_tiny_replica(work / "tiny", seed=seed))
        images, _ = load_images(dataset, image_size(params))
        folds = leave_one_subject_out(dataset.table["subject"], dataset.table["image"])

        seconds = []  # each fold's worker time (never a wait for the sandbox)

        def fold_run(stage: str, fold, root: str):
            job = work / root / fold.subject
            seconds.append(run_fold(FoldTask(spec, params, fold, job, seed, "quick", "cpu", settings), dataset, images)["train_seconds"])
            return read_fold(job)[0]

        stage = "interface"
        try:
            first = fold_run(stage, folds[0], "a")
            rats = ", ".join(sorted(set(dataset.table["subject"]) - {folds[0].subject}))
            report.add("interface.fit", PASS, f"fit on the images of rats {rats} and predict on {len(first)} of rat "
                                              f"{folds[0].subject} in {seconds[-1]:.1f} s (sandboxed worker)")
            _shape_checks(report, first, len(first))
            stage = "determinism"
            again = fold_run(stage, folds[0], "b")
            differ = int((again["y_pred"] != first["y_pred"]).sum())
            gap = float(np.max(np.abs(again["score"].to_numpy(float) - first["score"].to_numpy(float)), initial=0.0))
            if differ or gap > 1e-6:
                report.add("interface.determinism", FAIL, f"two runs with seed {seed} disagree: {differ}/{len(first)} labels differ, "
                                                          f"scores differ by up to {gap:.3g}", FIX["determinism"])
                return
            report.add("interface.determinism", PASS, f"two fits with seed {seed} gave identical predictions")
            stage = "loro"
            frames = [first] + [fold_run(stage, f, "a") for f in folds[1:]]
        except FoldError as e:
            _fold_failure(report, stage, e, settings)
            if stage != "loro" and not any(c.name.startswith("loro") for c in report.checks):
                report.add("loro", SKIP, "not run: the interface checks failed")
            return
        import pandas as pd

        s = score_frame(pd.concat(frames, ignore_index=True))
        report.add("loro.smoke", PASS, f"{len(folds)} leave-one-rat-out folds on a tiny replica ({len(dataset)} images), one "
                                       f"sandboxed worker per fold, in {seconds[0] + sum(seconds[2:]):.1f} s; pooled F1 "
                                       f"{s['pooled']['f1']:.3f} (tiny data: the number means nothing)")
        where = {"runsc": "a gVisor sandbox (a kernel of its own)", "bwrap": "a bubblewrap sandbox (namespaces on the host's kernel)",
                 "none": "a separate process (--sandbox none: not isolated)"}[settings.resolved("cpu")]
        report.add("loro.labels", PASS, f"the method ran in {where} and saw TestSet (images, subjects, keys; no labels); "
                                        "the harness scored its predictions")


def builtin_names() -> set[str]:
    """Names of methods that are not submissions (a submission must not take them)."""
    from ..methods.registry import default_registry

    r = default_registry()
    return {s.name for s in r.specs() if s.kind != "submission"} | {f.family for f in r.families()}


def registered_elsewhere(name: str, folder: Path) -> Check | None:
    from ..methods.registry import default_registry

    for s in default_registry().specs():
        if s.name == name and s.folder is not None and s.folder != Path(folder).resolve():
            return Check("metadata.name", FAIL, f"name {name!r} is already taken by {s.source}", "choose another name")
    return None
