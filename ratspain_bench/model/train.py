"""`train`: fit a method on every animal of a dataset with exactly the config of its leaderboard row, and
save it as an MLflow pyfunc model with its model card.

The config is resolved as `run` resolves it (`evaluation.configure`: profile, the method's params, the
`--weights`/`--finetune` settings it declares, `--set`), or taken from a LORO parent run (`from_run`),
whose config and code hashes must then be reproduced here. The model folder is built in a temporary
sibling and renamed into place when complete. The model is also logged as a run of the experiment
`ratspain-models/<dataset>` (tag `ratspain.role=model`; artifacts `model/` and `MODEL_CARD.md`), so it
has a `runs:/<run>/model` URI, and `register` adds it to the MLflow model registry.
An outside method that is not trusted (a submission, an untrusted plugin) is fitted and saved in a sandboxed
worker (`outside.train_state`): its state comes back only as plain files and folders within a size limit
(`SandboxSettings.state_mb`), and the model carries a copy of the submission's code (`ratspain/code/`); its
meta says `sandboxed`, so `predict` scores it in such workers too and never imports it here.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..data.cache import load_images
from ..data.imbalance import COUNT_KEYS, subject_counts
from ..data.synth import FIELDS as SYNTH_FIELDS
from ..errors import InputError
from ..evaluation.configure import configure, require_task
from ..evaluation.fold import META_COLUMNS, au_grades, build, image_size
from ..evaluation.identity import code_hash, config_hash, snapshot, task_fingerprint
from ..evaluation.record import PARENT, Store, Tag, git_commit, versions
from ..evaluation.outputs import copy_tree
from ..evaluation.outside import train_state
from ..evaluation.sandbox import SandboxSettings, require
from ..methods.base import Context, TrainSet, config_params
from ..methods.registry import MethodSpec, get_method
from ..paths import cache_dir
from ..tasks import by_au
from . import evidence
from .card import write_card
from .pyfunc import save_pyfunc
from .saved import CARD, CODE_DIR, FORMAT, STATE, SYNTHETIC_NOTE, write_state

MODEL_EXPERIMENT = "ratspain-models/"
ROLE_MODEL = "model"
REPLICA_NAME = "ratspain-replica"  # what `load_dataset(None)` names the built-in replica
THRESHOLD = 0.5  # every built-in method's own decision: p(pain) > 0.5


@dataclass(frozen=True)
class Recipe:
    """What to train: the method, its full config (public names), profile and seed, and their hashes."""

    spec: MethodSpec
    params: dict
    profile: str
    seed: int
    config_hash: str
    code_hash: str
    fingerprint: str = ""  # the dataset a --from-run run used
    task: str = "binary"  # `au`: the model grades the four action units too (`ratspain_bench.tasks`)


def is_synthetic(dataset) -> bool:
    """The built-in replica, or a folder `ratspain-bench synth` wrote (its au_regions.json beside a manifest
    with exactly the renderer's columns)."""
    if dataset.name == REPLICA_NAME:
        return True
    src = Path(dataset.source)
    if src.suffix.lower() != ".csv" or not (src.parent / "au_regions.json").is_file():
        return False
    with open(src, encoding="utf-8-sig") as f:
        return f.readline().strip().split(",") == list(SYNTH_FIELDS)


def _check_trainable(spec: MethodSpec, sandbox: SandboxSettings) -> None:
    """Outside code trains only in its sandbox (or with --no-sandbox, unisolated); refused before any work otherwise."""
    if not spec.trusted:
        require(sandbox, [spec.name])


@contextmanager
def _in_worker(spec: MethodSpec):
    """An outside method's description failing in its worker, said as such (it is never imported here)."""
    try:
        yield
    except InputError as e:
        text = str(e)
        text = text[len(spec.name) + 2:] if text.startswith(f"{spec.name}: ") else text
        raise InputError(f"{spec.name}: outside code runs only sandboxed (`train` fits and saves it in its worker), "
                         f"and there: {text}") from None


def recipe(method: str, profile: str = "quick", seed: int = 0, overrides: dict | None = None, where_declared: dict | None = None,
           task: str = "binary", sandbox: SandboxSettings | None = None) -> Recipe:
    spec = get_method(method)
    sandbox = sandbox or SandboxSettings()
    _check_trainable(spec, sandbox)
    if spec.trusted:
        params = configure(spec, profile, overrides, where_declared)
        require_task(spec, task)
    else:
        with _in_worker(spec):
            params = configure(spec, profile, overrides, where_declared, sandbox)
            require_task(spec, task, sandbox)
    return Recipe(spec, params, profile, seed, config_hash(spec.family, params), code_hash(spec), task=task)


def recipe_from_run(run_id: str, method: str | None, runs_dir, uri: str | None, sandbox: SandboxSettings | None = None) -> Recipe:
    """The method, config, profile and seed of a LORO parent run, checked to give its config and code hashes here."""
    store = Store(runs_dir, uri)
    try:
        run = store.client.get_run(run_id)
    except Exception:
        raise InputError(f"--from-run {run_id}: no such run in {store.uri}") from None
    tags = run.data.tags
    if tags.get(Tag.ROLE) != PARENT:
        raise InputError(f"--from-run {run_id}: not a LORO parent run ({Tag.ROLE}={tags.get(Tag.ROLE)!r})")
    name = tags.get(Tag.METHOD, "")
    if method and method != name:
        raise InputError(f"--from-run {run_id}: that run is of {name!r}, not {method!r}")
    spec = get_method(name)
    sandbox = sandbox or SandboxSettings()
    _check_trainable(spec, sandbox)
    profile, seed = tags.get(Tag.PROFILE, "quick"), int(tags.get(Tag.SEED, "0"))
    logged = {k[len("cfg."):]: v for k, v in run.data.params.items() if k.startswith("cfg.")}
    if spec.trusted:
        base = configure(spec, profile)
        params = config_params(spec.checked_config(None, **{k: base[k] if str(base.get(k)) == v else v for k, v in logged.items()}))
    else:  # its config resolved in its worker
        with _in_worker(spec):
            base = configure(spec, profile, settings=sandbox)
            params = configure(spec, None, {k: base[k] if str(base.get(k)) == v else v for k, v in logged.items()}, settings=sandbox)
    r = Recipe(spec, params, profile, seed, config_hash(spec.family, params), code_hash(spec), tags.get(Tag.FINGERPRINT, ""),
               tags.get(Tag.TASK, "binary"))
    if r.config_hash != tags.get(Tag.CONFIG_HASH):
        raise InputError(f"--from-run {run_id}: its logged parameters give config {r.config_hash} here, not the run's "
                         f"{tags.get(Tag.CONFIG_HASH)}; train with --method {name} --set ... instead")
    if r.code_hash != tags.get(Tag.CODE_HASH):
        raise InputError(f"--from-run {run_id}: made by code {tags.get(Tag.CODE_HASH)} of {name}; this installation's is "
                         f"{r.code_hash} (check out git commit {run.data.params.get('git_commit', '?')} to reproduce it)")
    return r


def dataset_summary(dataset) -> dict:
    per = subject_counts(dataset)
    return {"name": dataset.name, "source": dataset.source, "fingerprint": dataset.fingerprint, "n": len(dataset),
            "synthetic": is_synthetic(dataset), "per_class": {k: sum(c[k] for c in per.values()) for k in COUNT_KEYS if k != "total"},
            "columns": list(COUNT_KEYS), "per_subject": per}


def training_set(r: Recipe, dataset) -> TrainSet:
    """Every image of the dataset as one TrainSet (AU grades too in the au task)."""
    t = dataset.table
    images = load_images(dataset, image_size(r.params))[0]
    cols = [c for c in META_COLUMNS if c in t.columns]
    au = by_au(au_grades(t)) if r.task == "au" else None
    return TrainSet(np.asarray(images), t["label"].to_numpy(), t["subject"].to_numpy(), tuple(dataset.keys),
                    t[cols].reset_index(drop=True) if cols else None, au)


def fit(r: Recipe, dataset, device: str, quiet: bool):
    """The method fitted on every image of the dataset (the fold path's `build`, with exactly `r.params`)."""
    train = training_set(r, dataset)

    def progress(epoch=None, epochs=None, loss=None, stage=None, **_):
        if not quiet:
            print(f"[{r.spec.name}] {stage or f'epoch {epoch}/{epochs} loss {loss:.4f}'}", file=sys.stderr, flush=True)

    ctx = Context(seed=r.seed, device=device, profile=r.profile, cache_dir=cache_dir(), progress=progress, task=r.task)
    method = build(r.spec, r.params, ctx)
    method.fit(train)
    return method


def fit_sandboxed(r: Recipe, dataset, device: str, sandbox: SandboxSettings) -> tuple[Path, dict, callable]:
    """An outside method fitted and saved in its sandboxed worker: (its checked state folder, {"predict_batch"}, cleanup)."""
    request = {"params": r.params, "seed": r.seed, "device": device, "profile": r.profile, "task": r.task}
    return train_state(r.spec, request, training_set(r, dataset), sandbox, device)


def evaluate(r: Recipe, dataset, device: str, runs_dir, uri: str | None, quiet: bool,
             sandbox: SandboxSettings | None = None) -> None:
    """The LORO run of exactly this recipe (`run` with every parameter set), so the card has its evidence."""
    from ..evaluation.runner import RunOptions, run_methods

    opts = RunOptions(profile=r.profile, seed=r.seed, device=device, runs_dir=Path(runs_dir), tracking_uri=uri,
                      jobs=os.cpu_count() or 1, quiet=quiet, overrides=dict(r.params), task=r.task,
                      **({} if sandbox is None else {"sandbox": sandbox}))
    (res,) = run_methods([r.spec.name], dataset, opts)
    if res.status != "complete":
        raise InputError(f"--evaluate: the LORO run of {r.spec.name} failed: {res.error}")


def _copy_sandboxed(spec: MethodSpec, sandboxed, method_dir: Path) -> None:
    """The worker's checked state into `method_dir`, and the submission's code files beside it (`code/`)."""
    state, _, settings = sandboxed
    copy_tree(state, method_dir, settings.state_mb, spec.name)
    if spec.folder is not None:  # the files its worker ran (no link leaves the folder: `identity.folder_files`)
        shutil.copytree(snapshot(spec.folder).path, method_dir.parent / CODE_DIR)


def _register(store: Store, name: str, run, source: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        store.client.create_registered_model(name)
    except MlflowException as e:
        if "already exists" not in str(e).lower() and "RESOURCE_ALREADY_EXISTS" not in str(e):
            raise
    return store.client.create_model_version(name, source, run_id=run.info.run_id).version


def train_model(r: Recipe, dataset, out, *, device: str = "auto", register: str | None = None, runs_dir="ratspain-runs",
                tracking_uri: str | None = None, run_loro: bool = False, quiet: bool = True,
                sandbox: SandboxSettings | None = None) -> dict:
    """Fit, save (pyfunc + card) into `out`, log (and register); returns the model's `model.json` content.
    An untrusted outside method is fitted and saved in its sandboxed worker (`sandbox`: its settings)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: exists and is not empty; choose another --out or remove it")
    dataset.require_images()
    if r.fingerprint and r.fingerprint != task_fingerprint(dataset, r.task):
        raise InputError(f"--from-run: that run used dataset {r.fingerprint}, --data is {dataset.fingerprint}")
    if r.spec.trusted:
        if run_loro:
            evaluate(r, dataset, device, runs_dir, tracking_uri, quiet)
        ev, why = evidence.find(dataset, r.spec.name, r.config_hash, r.code_hash, r.seed, runs_dir, tracking_uri, r.task)
        method = fit(r, dataset, device, quiet)
        return _save(r, dataset, out, method, None, ev, why, register, runs_dir, tracking_uri)
    sandbox = sandbox or SandboxSettings()
    require(sandbox, [r.spec.name])
    if run_loro:
        evaluate(r, dataset, device, runs_dir, tracking_uri, quiet, sandbox)
    ev, why = evidence.find(dataset, r.spec.name, r.config_hash, r.code_hash, r.seed, runs_dir, tracking_uri, r.task)
    state, info, cleanup = fit_sandboxed(r, dataset, device, sandbox)
    info = {**info, "sandbox": sandbox.resolved(device)}
    try:
        return _save(r, dataset, out, None, (state, info, sandbox), ev, why, register, runs_dir, tracking_uri)
    finally:
        cleanup()


def _save(r: Recipe, dataset, out: Path, method, sandboxed, ev, why, register, runs_dir, tracking_uri) -> dict:
    """The model folder of a fitted `method` (trusted), or of the state a sandboxed worker saved
    (`sandboxed`: (state folder, its info, SandboxSettings))."""
    summary = dataset_summary(dataset)
    store = Store(runs_dir, tracking_uri)
    exp = store.experiment(MODEL_EXPERIMENT + dataset.name)
    run = store.client.create_run(exp, run_name=f"{r.spec.name} model", tags={
        Tag.ROLE: ROLE_MODEL, Tag.METHOD: r.spec.name, Tag.DATASET: dataset.name, Tag.FINGERPRINT: dataset.fingerprint,
        Tag.SEED: str(r.seed), Tag.CONFIG_HASH: r.config_hash, Tag.CODE_HASH: r.code_hash, Tag.PROFILE: r.profile,
        "ratspain.synthetic": str(summary["synthetic"]).lower()})
    if sandboxed is None:
        cls = type(method)
        what = {"class": f"{cls.__module__}:{cls.__qualname__}", "preprocessing": method.input_spec()}
    else:
        spec, (_, info, settings) = r.spec, sandboxed
        what = {"class": spec.meta.get("entry_point") if spec.folder is not None else str(spec.target),
                "preprocessing": {"image_size": image_size(r.params), "colour": "RGB uint8",
                                  "resize": "the whole image, bilinear, to image_size x image_size (alpha dropped, gray expanded)"},
                "sandboxed": True, "sandbox": info["sandbox"], "state_mb": settings.state_mb, "predict_batch": info["predict_batch"],
                "code": CODE_DIR if spec.folder is not None else None, "distribution": spec.distribution or None}
    meta = {"format": FORMAT, "method": r.spec.name, "family": r.spec.family, "class": what.pop("class"),
            "source": r.spec.source, "cite": r.spec.cite, "params": r.params, "config_hash": r.config_hash,
            "code_hash": r.code_hash, "profile": r.profile, "seed": r.seed, "task": r.task, "git_commit": git_commit(), "threshold": THRESHOLD,
            "preprocessing": what.pop("preprocessing"), "dataset": summary, "evidence_run": None if ev is None else ev.run_id,
            "mlflow_run": run.info.run_id, "tracking_uri": store.uri, "versions": versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **what}
    metadata = {k: meta[k] for k in ("method", "family", "config_hash", "code_hash", "seed", "profile", "task", "evidence_run")}
    metadata.update(dataset=dataset.name, dataset_fingerprint=dataset.fingerprint, synthetic=summary["synthetic"])
    if meta.get("sandboxed"):
        metadata["sandboxed"] = True
    if summary["synthetic"]:
        metadata["warning"] = SYNTHETIC_NOTE
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        folder = tmp / "model"
        if sandboxed is None:
            state = write_state(tmp / STATE, method, meta)
        else:
            state = write_state(tmp / STATE, None, meta, save=lambda d: _copy_sandboxed(r.spec, sandboxed, d))
        save_pyfunc(folder, state, metadata)
        write_card(folder, meta, ev, why)
        store.log(run.info.run_id, params={"method": r.spec.name, "family": r.spec.family, "seed": r.seed,
                                           **{f"cfg.{k}": v for k, v in r.params.items()}})
        store.client.log_artifacts(run.info.run_id, str(folder), "model")
        store.client.log_artifact(run.info.run_id, str(folder / CARD))
        if register:
            meta["registered"] = f"models:/{register}/{_register(store, register, run, f'{run.info.artifact_uri}/model')}"
        if out.exists():
            out.rmdir()
        os.replace(folder, out)
    except BaseException:
        store.client.set_terminated(run.info.run_id, "FAILED")
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    store.client.set_terminated(run.info.run_id, "FINISHED")
    return meta
