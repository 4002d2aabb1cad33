"""What outside methods do through sandboxed workers (`sandbox`): a fold, a saved model's training and
prediction, and the description of their declarations.

- `fit_predict`: one fold: the training rats' images, labels, subjects and keys and the test rat's images,
  subjects and keys go to a fresh worker, which fits and predicts; its predictions come back checked only
  as a file (`outputs.read_predictions`), the fold path checks them by the rules.
- `train_state` (task `train`): fit on every animal and `save` into `/fold/out/state`, accepted only as
  plain files and folders of bounded size (`outputs.check_tree`; `outputs.copy_tree` copies it into the model).
- `predict_state` (task `predict`): a checked private copy of that state bound read-only at `/fold/state`
  (and the model's own copy of the code), loaded to score one batch.
- `describe`: the method's declarations and full configs, computed where its code may run.
Keys reach a worker as `blind.outside_keys`, never as content digests.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..methods.base import Predictions
from . import blind, outputs
from .outputs import OutputError, check_tree
from . import sandbox
from .sandbox import SandboxError, SandboxSettings, run_worker, take


PARAMETER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")  # a config parameter's public name (an MLflow param key too)


def _strings(values) -> np.ndarray:
    return np.asarray([str(v) for v in values], dtype=str)


def _fold_request(task) -> dict:
    return {"params": task.params, "seed": task.seed, "device": task.device, "profile": task.profile, "task": task.task}


def prestart(task) -> None:
    """Start the worker of `task`'s fold now (its interpreter loads while the harness prepares the run; not armed)."""
    sandbox.prestart(task.spec, "fold", _fold_request(task), task.sandbox, task.device)


def train_arrays(train) -> dict[str, np.ndarray]:
    """A TrainSet as the worker's `train_*` arrays (labels, subjects, keys as outside keys, pose columns, AU grades)."""
    arrays = {"train_images": np.ascontiguousarray(train.images), "train_labels": np.asarray(train.labels, dtype=np.int64),
              "train_subjects": _strings(train.subjects), "train_keys": _strings(blind.outside_keys(train.keys))}
    arrays.update(_meta_arrays("train", train.meta))
    for au, grades in (train.au or {}).items():
        arrays[f"train_au_{au}"] = np.asarray(grades, dtype=np.int64)
    return arrays


def test_arrays(test) -> dict[str, np.ndarray]:
    """A TestSet as the worker's `test_*` arrays (no labels exist in a TestSet; keys as outside keys)."""
    return {"test_images": np.ascontiguousarray(test.images), "test_subjects": _strings(test.subjects),
            "test_keys": _strings(blind.outside_keys(test.keys)), **_meta_arrays("test", test.meta)}


def _meta_arrays(part: str, meta) -> dict[str, np.ndarray]:
    arrays = {}
    if meta is not None:
        for col in meta.columns:
            values = meta[col].to_numpy()
            arrays[f"{part}_meta_{col}"] = _strings(values) if values.dtype == object else values.astype(float)
    return arrays


def _predictions(out: Path, n: int, task: str) -> Predictions:
    try:
        return outputs.read_predictions(out, n, task)
    except OutputError as e:
        raise SandboxError(f"no usable predictions from the worker: {e}", "malformed") from None


def fit_predict(task, train, test) -> tuple[Predictions, float, dict]:
    """One fold of an outside method in its sandbox: (its predictions, unchecked; its worker's seconds from the moment
    it may import the method to its end, never a wait for the sandbox; extra fold metrics).
    With `task.prefetch` (more folds of this method follow), the next fold's worker starts now."""
    arrays = {**train_arrays(train), **test_arrays(test)}
    worker = take(task.spec, "fold", _fold_request(task), task.sandbox, task.device, spare=task.prefetch)
    try:
        pred = _predictions(worker.run(arrays), len(test), task.task)
    finally:
        worker.close()
    return pred, worker.seconds, {}


# ---------------------------------------------------------------- saved models of outside methods


def train_state(spec, request: dict, train, settings: SandboxSettings, device: str = "cpu") -> tuple[Path, dict, callable]:
    """Fit an outside method on `train` and `save` it, in a sandboxed worker: (its state folder, checked by `check_tree`;
    what it reported: {"predict_batch": int}; cleanup). InputError naming the method when it fails."""
    try:
        out, worker = run_worker(spec, "train", request, train_arrays(train), settings, device)
        cleanup = worker.close
    except SandboxError as e:
        raise InputError(f"{spec.name}: training in its sandbox failed: {e}") from None
    try:
        state = out / "state"
        check_tree(state, settings.state_mb, spec.name)
        info = {"predict_batch": 64}
        try:
            told = outputs.read_json(out / "info.json", 4096)
        except OutputError:
            told = None
        batch = told.get("predict_batch") if isinstance(told, dict) else None
        if isinstance(batch, int) and not isinstance(batch, bool):
            info["predict_batch"] = max(1, min(batch, 1024))
        return state, info, cleanup
    except BaseException:
        cleanup()
        raise


def predict_state(spec, request: dict, state: Path, test, settings: SandboxSettings, device: str = "cpu",
                  spare: bool = False) -> Predictions:
    """One batch scored by a saved outside model in a sandboxed worker (`state` bound read-only); unchecked."""
    worker = take(spec, "predict", request, settings, device, spare=spare, state=state)
    try:
        return _predictions(worker.run(test_arrays(test)), len(test), request.get("task", "binary"))
    finally:
        worker.close()


def describe(spec, profile: str | None, param_sets: list[dict], settings: SandboxSettings) -> dict:
    """The method's declarations and the full config of each param set, computed in a sandboxed worker.

    Returns {"configs": [dict | {"error": str}], "search_space": dict, "sensitivity_grid": dict, "fields": [names],
    "seconds": its worker's time, never a wait for the sandbox}."""
    request = {"profile": profile, "param_sets": param_sets}
    try:
        out, worker = run_worker(spec, "describe", request, {}, settings, "cpu", timeout=min(settings.time_limit, 300))
    except SandboxError as e:
        raise InputError(f"{spec.name}: cannot load the method in its sandbox: {e}") from None
    try:
        info = outputs.read_json(out / "describe.json")
    except OutputError as e:
        raise InputError(f"{spec.name}: its sandboxed worker gave no description ({e})") from None
    finally:
        worker.close()
    if not (isinstance(info, dict) and isinstance(info.get("configs"), list) and len(info["configs"]) == len(param_sets)):
        raise InputError(f"{spec.name}: its sandboxed worker gave a malformed description")
    for c in info["configs"]:
        if not isinstance(c, dict) or not all(isinstance(k, str) and isinstance(v, (int, float, str, bool, type(None)))
                                              for k, v in c.items()):
            raise InputError(f"{spec.name}: its sandboxed worker gave a malformed config")
        bad = sorted(k for k in c if k != "error" and not PARAMETER.match(k))
        if bad:
            raise InputError(f"{spec.name}: config parameter {outputs.one_line(repr(bad[0]), 80)} is not a name "
                             "(letters, digits, _ . -, at most 64, starting with a letter or _)")
    return {**info, "seconds": worker.seconds}
