"""The sandboxed worker: `python -I -m ratspain_bench.evaluation.worker IN OUT`; what it does (its job) is in
`IN/request.json`, read only once the harness lets it start.

Job `fold`: build the method from `IN/request.json` (its code, the full config, seed, device), read
the fold's arrays (training images, labels, subjects, keys, pose columns, and AU grades in the au
task; test images, subjects, keys, pose columns: no test labels exist here), fit, predict, write
`OUT/predictions.npz` (labels, scores, `au_<name>` grades). Job `describe`: import the class and report its declarations and the full config of each
requested parameter set (`OUT/describe.json`). Job `train` (a saved model): build the method as `fold`
does, fit on the `train_*` arrays (every animal), `save` into `OUT/state` (`OUT/info.json`: its
`predict_batch`). Job `predict`: `cls.load(config, STATE, context)` from the read-only state folder the
request names, predict the `test_*` arrays of one batch, write `OUT/predictions.npz` as `fold` does.
On failure: `OUT/error.json` (a one-line reason) and exit code 1. Nothing written here is trusted by
the harness beyond what it checks.

Start-up: the `preload` libraries of `IN/boot.json` (installed ones, named by the harness) are imported first, then
it says so on stdout where asked (a gVisor worker is snapshotted there, and later workers restored from it); the
request and the method's own code only once the harness writes `IN/GO`, and the inputs once it writes `IN/READY`.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np


def _where(e: BaseException, folder: str | None) -> str:
    """`ExcType: message (at file:line in function)`, the frame being the last one in the method's own code."""
    frames = traceback.extract_tb(e.__traceback__)
    mine = [f for f in frames if folder and str(Path(f.filename).resolve()).startswith(folder)]
    f = (mine or frames or [None])[-1]
    at = f" (at {Path(f.filename).name}:{f.lineno} in {f.name})" if f is not None else ""
    if isinstance(e, SyntaxError):
        return f"SyntaxError: {e.msg} (at {Path(e.filename or '?').name}:{e.lineno})"
    msg = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {msg}{at}"


def _load_class(req: dict):
    """The method class, imported here (its own exceptions propagate, with their place in its code)."""
    import importlib

    from ratspain_bench.methods.base import Method
    from ratspain_bench.methods.registry import load_from_folder

    for p in req.get("sys_path", []):
        sys.path.insert(0, p)
    if req.get("folder"):
        cls = load_from_folder(Path(req["folder"]), req["entry_point"])
    else:
        module, _, attr = req["entry_point"].partition(":")
        cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"{req['entry_point']} is not a ratspain_bench.methods.Method subclass")
    return cls


def _arrays(inp: Path, part: str) -> dict:
    out = {}
    for f in sorted(inp.glob(f"{part}_*.npy")):
        out[f.stem[len(part) + 1:]] = np.load(f, allow_pickle=False)
    return out


def _meta(a: dict):
    cols = {k[len("meta_"):]: v for k, v in a.items() if k.startswith("meta_")}
    if not cols:
        return None
    import pandas as pd

    return pd.DataFrame(cols)


def _train_set(inp: Path):
    from ratspain_bench.methods.base import TrainSet

    tr = _arrays(inp, "train")
    au = {k[len("au_"):]: v for k, v in tr.items() if k.startswith("au_")}
    return TrainSet(tr["images"], tr["labels"], tr["subjects"].astype(object), tuple(tr["keys"].tolist()), _meta(tr), au or None)


def _test_set(inp: Path):
    from ratspain_bench.methods.base import TestSet

    te = _arrays(inp, "test")
    return TestSet(te["images"], te["subjects"].astype(object), tuple(te["keys"].tolist()), _meta(te))


def _context(req: dict, work: Path | None):
    from ratspain_bench.methods.base import Context

    return Context(seed=int(req["seed"]), device=req.get("device", "cpu"), profile=req.get("profile", "quick"),
                   cache_dir=None, work_dir=work, task=req.get("task", "binary"))


def _write_predictions(pred, out: Path, task: str) -> None:
    from ratspain_bench.methods.base import Predictions

    if not isinstance(pred, Predictions):
        raise TypeError(f"predict() returned {type(pred).__name__}, expected ratspain_bench.methods.Predictions")
    au = {f"au_{k}": np.asarray(v) for k, v in (pred.au or {}).items() if isinstance(k, str) and k.isidentifier()} if task == "au" else {}
    np.savez(out / "predictions.npz", labels=np.asarray(pred.labels), scores=np.asarray(pred.scores, dtype=float), **au)


def fold(cls, req: dict, inp: Path, out: Path) -> None:
    from ratspain_bench.methods.base import make_config

    config = make_config(cls.Config, None, **req["params"])
    train, test = _train_set(inp), _test_set(inp)
    work = out / "artifacts"
    work.mkdir(exist_ok=True)
    method = cls(config, _context(req, work))
    t0 = time.perf_counter()
    STAGE[0] = "fit"
    method.fit(train)
    STAGE[0] = "predict"
    _write_predictions(method.predict(test), out, req.get("task", "binary"))
    (out / "info.json").write_text(json.dumps({"seconds": time.perf_counter() - t0}))


def train(cls, req: dict, inp: Path, out: Path) -> None:
    """Fit on every animal and `save` the fitted state into OUT/state (checked and copied by the harness)."""
    from ratspain_bench.methods.base import make_config

    config = make_config(cls.Config, None, **req["params"])
    work = out / "work"  # scratch for the method; only OUT/state is kept
    work.mkdir()
    method = cls(config, _context(req, work))
    t0 = time.perf_counter()
    method.fit(_train_set(inp))
    (out / "state").mkdir()
    method.save(out / "state")
    (out / "info.json").write_text(json.dumps({"seconds": time.perf_counter() - t0, "predict_batch": int(cls.predict_batch)}))


def predict(cls, req: dict, inp: Path, out: Path) -> None:
    """A saved model loaded from its read-only state folder, scoring one batch."""
    from ratspain_bench.methods.base import make_config

    config = make_config(cls.Config, None, **req["params"])
    method = cls.load(config, Path(req["state"]), _context(req, None))
    if not isinstance(method, cls):
        raise TypeError(f"load() returned {type(method).__name__}, expected a {cls.__name__}")
    _write_predictions(method.predict(_test_set(inp)), out, req.get("task", "binary"))


def describe(cls, req: dict, out: Path) -> None:
    import dataclasses

    from ratspain_bench.methods.base import Method, config_params, make_config, public_name

    config_cls = getattr(cls, "Config", None)
    is_dc = config_cls is not None and dataclasses.is_dataclass(config_cls)
    configs = []
    for params in req["param_sets"]:
        try:
            if not is_dc:
                raise TypeError("the method's Config is missing or not a dataclass")
            configs.append(config_params(make_config(config_cls, req.get("profile"), **params)))
        except (KeyError, TypeError, ValueError) as e:
            configs.append({"error": str(e.args[0] if e.args else e)})
    info = {"class": cls.__name__, "config_class": getattr(config_cls, "__name__", None), "config_dataclass": is_dc,
            "missing": [m for m in ("fit", "predict") if getattr(cls, m) is getattr(Method, m)], "configs": configs,
            "fields": [public_name(f) for f in dataclasses.fields(config_cls)] if is_dc else [],
            "search_space": dict(getattr(cls, "SEARCH_SPACE", {}) or getattr(config_cls, "SEARCH_SPACE", {}) or {}),
            "sensitivity_grid": dict(getattr(cls, "SENSITIVITY_GRID", {}) or {}),
            "tasks": [str(t) for t in getattr(cls, "tasks", ("binary",))]}
    (out / "describe.json").write_text(json.dumps(info, default=str))


def _wait_for(signal: Path, patience_s: float = 3600.0) -> None:
    """A worker is started ahead of its fold; the harness writes GO (import the method) and READY (inputs written)."""
    deadline = time.monotonic() + patience_s
    while not signal.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the harness gave no {signal.name}")
        time.sleep(0.01)


def _preload(names) -> None:
    """Installed libraries the method will import, loaded before it may run (a hint: one that fails is skipped)."""
    import importlib

    import ratspain_bench.methods.base  # noqa: F401

    for name in names:
        try:
            importlib.import_module(str(name))
        except Exception:  # noqa: BLE001 - the method's own import will report it
            pass


JOBS = {"fold": fold, "train": train, "predict": predict}
STAGE = ["import"]  # where a fold's failure happened (import, fit, predict): told to the harness in error.json


def main(argv=None) -> int:
    inp, out = (Path(a) for a in (argv or sys.argv[1:])[:2])
    boot = json.loads((inp / "boot.json").read_text())
    _preload(boot.get("preload", []))
    if boot.get("announce"):
        print("ratspain-worker: preloaded", flush=True)  # a gVisor worker is checkpointed here (`runsc.template`)
    req = {}
    try:
        _wait_for(inp / "GO")
        req = json.loads((inp / "request.json").read_text())  # read only now: a restored worker gets its fold's
        cls = _load_class(req)
        _wait_for(inp / "READY")
        job = req.get("job", "describe")
        if job in JOBS:
            JOBS[job](cls, req, inp, out)
        else:
            describe(cls, req, out)
    except BaseException as e:  # reported to the harness as the fold's reason
        (out / "error.json").write_text(json.dumps({"error": _where(e, req.get("folder")), "stage": STAGE[0]}))
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # its outputs are written and closed: skip the interpreter's teardown
