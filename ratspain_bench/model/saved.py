"""A trained model on disk and in memory.

On disk it is an MLflow pyfunc folder (`MLmodel`, the pyfunc wrapper, requirements, `MODEL_CARD.md`)
whose artifact `artifacts/ratspain/` holds `model.json` (what was trained, on what data, with which
config and code) and `method/` (the fitted method in its own format: `Method.save`). In memory it is a
`TrainedModel`: the method loaded by `Method.load`, and `predict(images)`.

Loading checks the folder's format version (a newer or unknown one is refused with the reason) and
compares the code hash it was trained with to this installation's: when they differ it loads, with a
`CodeChangedWarning` naming both, since the model card's LORO evidence was measured with the old code.

A model of an untrusted outside method (`model.json` says `sandboxed`) is never imported here: its
`method/` state and `code/` (the submission's files) are copied, checked (plain files and folders,
bounded size), into a private folder, and each batch is scored in a sandboxed worker that loads the
state read-only (`SandboxedMethod`, `outside.predict_state`); its outputs are checked as a fold's are.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import warnings
import weakref
from pathlib import Path
from typing import Iterator, NamedTuple

import pandas as pd

from ..errors import InputError
from ..methods.base import Context, Method, make_config
from ..methods.registry import get_method

FORMAT = 1
STATE = "ratspain"  # the MLflow artifact holding model.json and method/
META_FILE = "model.json"
METHOD_DIR = "method"
CODE_DIR = "code"  # a sandboxed model's copy of its submission's files
CARD = "MODEL_CARD.md"
SYNTHETIC_NOTE = ("trained on the synthetic replica (rendered faces, not rats): for trying the tool only; "
                  "it must not be used on real animals")


class SyntheticDataWarning(UserWarning):
    """A model trained on the synthetic replica was asked to score images."""


class CodeChangedWarning(UserWarning):
    """A model saved by other code than this installation's (its card's evidence may not hold)."""


warnings.filterwarnings("always", category=SyntheticDataWarning)  # every call says it, not only the first


def write_state(folder: Path, method, meta: dict, save=None) -> Path:
    """`folder/model.json` and the fitted method in `folder/method/` (written by `save(folder)`, default `method.save`)."""
    (folder / METHOD_DIR).mkdir(parents=True)
    (save or method.save)(folder / METHOD_DIR)
    (folder / META_FILE).write_text(json.dumps(meta, indent=1, default=str), encoding="utf-8")
    return folder


def read_meta(state: Path) -> dict:
    try:
        meta = json.loads((state / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{state / META_FILE}: not a ratspain_bench model ({type(e).__name__}: {e})") from None
    fmt = meta.get("format")
    if fmt != FORMAT:
        raise InputError(f"{state.parent.parent}: model format {fmt!r}, this ratspain_bench reads format {FORMAT}; "
                         f"retrain it with `ratspain-bench train` or install the version that wrote it "
                         f"(ratspain_bench {meta.get('versions', {}).get('version.ratspain_bench', '?')})")
    return meta


class SandboxedMethod:
    """A saved outside method's stand-in: `predict(test)` scores one batch in a fresh sandboxed worker that loads the
    state from a checked private copy (read-only there), and returns predictions checked by the fold's rules."""

    explain = None  # no attention maps from sandboxed models

    def __init__(self, spec, meta: dict, state: Path, settings, device: str, private: Path):
        self.spec, self.meta, self.state, self.settings, self.device = spec, meta, state, settings, device
        self.predict_batch = int(meta.get("predict_batch") or 64)
        self.request = {"params": meta["params"], "seed": int(meta["seed"]), "device": device, "profile": meta.get("profile", ""),
                        "task": meta.get("task", "binary")}
        self.pending = 0  # batches still to come in this `batches` call (a spare worker is started for the next)
        self._private = weakref.finalize(self, shutil.rmtree, str(private), True)

    def predict(self, test):
        from ..evaluation.predictions import InvalidOutput, check_output
        from ..evaluation.outside import predict_state
        from ..evaluation.sandbox import SandboxError

        self.pending = max(self.pending - 1, 0)
        task = self.request["task"]
        try:
            pred = predict_state(self.spec, self.request, self.state, test, self.settings, self.device, spare=self.pending > 0)
            return check_output(pred.labels, pred.scores, len(test.keys), pred.au if task == "au" else None, task)
        except (SandboxError, InvalidOutput) as e:
            self.finish()
            raise InputError(f"{self.meta['method']}: scoring in its sandbox failed: {e}") from None

    def finish(self) -> None:
        """Close the spare worker started for a batch that will not come."""
        from ..evaluation.sandbox import drop_spare

        self.pending = 0
        drop_spare(self.spec, "predict", self.request, self.settings, self.device, self.state)


class Grouped(NamedTuple):
    """`TrainedModel.predict(..., by=...)`: the per-image scores, the per-group summary and the joined frames."""

    scores: pd.DataFrame
    summary: pd.DataFrame
    frames: pd.DataFrame


class TrainedModel:
    """A fitted method ready to score new images; `meta` is its `model.json`."""

    def __init__(self, meta: dict, method, folder: Path):
        self.meta, self.method, self.folder = meta, method, folder

    @property
    def synthetic(self) -> bool:
        return bool(self.meta["dataset"]["synthetic"])

    @property
    def image_size(self) -> int:
        return int(self.meta["params"].get("image_size", 224))

    def __repr__(self) -> str:
        return (f"TrainedModel({self.meta['method']}, config {self.meta['config_hash']}, code {self.meta['code_hash']}, "
                f"trained on {self.meta['dataset']['name']}{', SYNTHETIC' if self.synthetic else ''})")

    def batches(self, images, batch_size: int | None = None, explain=None, progress=None) -> Iterator[pd.DataFrame]:
        """Scores batch by batch (see `predict`; default batch: the method's `predict_batch`); bounded memory for any
        number of images. `progress(n, total)` after each batch."""
        from .inputs import expand
        from .predict import score_batches

        items = expand(images)
        if self.synthetic:
            warnings.warn(f"{self.meta['method']}: {SYNTHETIC_NOTE}", SyntheticDataWarning, stacklevel=3)
        sandboxed = isinstance(self.method, SandboxedMethod)
        if explain is not None and sandboxed:
            raise InputError(f"{self.meta['method']}: --explain is not supported for a sandboxed model (outside code)")
        if explain is not None and type(self.method).explain is Method.explain:  # refused before any work
            raise InputError(f"{self.meta['method']}: no attention maps to explain (--explain needs PainSeeker)")
        size = batch_size or self.method.predict_batch
        if sandboxed:
            self.method.pending = -(-len(items) // size)
        try:
            for frame in score_batches(self.method, items, self.image_size, size, None if explain is None else Path(explain), progress):
                if self.synthetic:
                    frame["warning"] = SYNTHETIC_NOTE
                yield frame
        finally:
            if sandboxed:
                self.method.finish()

    def predict(self, images, batch_size: int | None = None, explain=None, by=None, high: float | None = None, overlay=None):
        """One row per image: `image`, `pain_probability`, `pain` (0/1, the method's decision: p > 0.5),
        `au_<name>` when the method grades action units, `error` (empty when scored), `explain` (with
        `explain=DIR`: the attention picture written there), `warning` (models trained on the replica).
        `images`: a file, a folder (recursive), a manifest CSV, a list of those, or a DataFrame with `path`.
        `by` (columns of a manifest, e.g. ["subject", "session"]): also summarise per group; returns
        `Grouped(scores, summary, frames)` (`video.summary.summarise`: frames scored, mean P(pain) with a bootstrap
        interval over frames, share called pain, mean RGS and AU grades, the share of candidate frames that were
        scorable (from the manifest's quality.csv), the share of frames above `high`; `frames`: the manifest joined
        to the scores). `overlay` (a folder, with `by`): also write each video annotated there, `<video stem>.mp4`
        (`video.overlay.write_overlays`; needs the quality.csv that `frames` writes beside the manifest)."""
        if by is None:
            if high is not None or overlay is not None:
                raise InputError("predict: high and overlay need by (and one manifest)")
            return pd.concat(list(self.batches(images, batch_size, explain)), ignore_index=True)
        from ..video.summary import high_threshold, join, read_quality, summarise

        manifest = images if isinstance(images, pd.DataFrame) else Path(images) if isinstance(images, (str, Path)) else None
        if manifest is None or (not isinstance(manifest, pd.DataFrame) and manifest.suffix.lower() != ".csv"):
            raise InputError("predict by groups: give one manifest (a CSV or a DataFrame with path and the group columns)")
        high_threshold(high, "rgs" if self.meta.get("task") == "au" else "pain_probability")  # checked before scoring
        quality = read_quality(manifest, required=overlay is not None)
        scores = pd.concat(list(self.batches(images, batch_size, explain)), ignore_index=True)
        frames = join(scores, manifest)
        summary = summarise(frames, None, by, high=high, quality=quality)
        if overlay is not None:
            from ..video.overlay import write_overlays

            write_overlays(frames, quality, overlay)
        return Grouped(scores, summary, frames)


def open_folder(folder: Path, device: str = "auto", sandbox=None) -> TrainedModel:
    """A model folder (with MLmodel) or its state folder, loaded (a sandboxed one: `open_sandboxed`)."""
    from ..evaluation.identity import code_hash

    folder = Path(folder)
    state = folder / "artifacts" / STATE if (folder / "MLmodel").is_file() else folder
    if not (state / META_FILE).is_file():
        raise InputError(f"{folder}: not a model folder (no MLmodel with a {STATE} artifact; make one with `ratspain-bench train`)")
    meta = read_meta(state)
    if meta.get("sandboxed"):
        return open_sandboxed(folder, state, meta, device, sandbox)
    spec = get_method(meta["family"])
    cls = spec.load()
    now = code_hash(spec)
    if now != meta["code_hash"]:
        warnings.warn(f"{folder}: trained with code {meta['code_hash']} of {meta['method']}; this installation's is {now}. "
                      "It loads, but its card's LORO evidence was measured with the old code", CodeChangedWarning, stacklevel=2)
    try:
        config = make_config(cls.Config, None, **meta["params"])
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{folder}: its config no longer fits {cls.__name__} ({e}); retrain it with this code") from None
    ctx = Context(seed=int(meta["seed"]), device=device, profile=meta.get("profile", ""), task=meta.get("task", "binary"))
    try:
        method = cls.load(config, state / METHOD_DIR, ctx)
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"{folder}: cannot load the saved {meta['method']} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    return TrainedModel(meta, method, folder)


def open_sandboxed(folder: Path, state: Path, meta: dict, device: str = "auto", sandbox=None) -> TrainedModel:
    """A model of an untrusted outside method, ready to score in sandboxed workers; its code is never imported here.
    Its state and code are copied (checked: plain files and folders, bounded size) into a private folder first."""
    from ..evaluation.identity import code_hash
    from ..evaluation.outputs import copy_tree
    from ..evaluation.sandbox import SandboxSettings, require
    from ..methods.registry import MethodSpec

    settings = sandbox or SandboxSettings()
    name = meta["method"]
    require(settings, [name])
    limit = max(settings.state_mb, int(meta.get("state_mb") or 0))  # the limit it was trained under
    private = Path(tempfile.mkdtemp(prefix="ratspain-model-state-"))
    try:
        copy_tree(state / METHOD_DIR, private / METHOD_DIR, limit, name)
        if meta.get("code"):
            copy_tree(state / CODE_DIR, private / CODE_DIR, limit, name)
            spec = MethodSpec(name, meta["family"], None, source=meta.get("source", ""), kind="submission",
                              folder=(private / CODE_DIR).resolve(), meta={"entry_point": meta["class"]})
        else:  # an untrusted plugin: its installed distribution's code
            spec = get_method(meta["family"])
            if spec.trusted:
                raise InputError(f"{folder}: saved as a sandboxed model of {name}, which is trusted here; retrain it")
        now = code_hash(spec)
        if now != meta["code_hash"]:
            warnings.warn(f"{folder}: trained with code {meta['code_hash']} of {name}; its code here is {now}. "
                          "It loads, but its card's LORO evidence was measured with the old code", CodeChangedWarning, stacklevel=3)
        method = SandboxedMethod(spec, meta, (private / METHOD_DIR).resolve(), settings, device, private)
    except BaseException:
        shutil.rmtree(private, ignore_errors=True)
        raise
    return TrainedModel(meta, method, folder)


def local_copy(uri: str, runs_dir="ratspain-runs", tracking_uri: str | None = None) -> Path:
    """A folder holding the model: the path itself, or a download of a `runs:/` or `models:/` URI."""
    if not uri.startswith(("runs:/", "models:/")):
        p = Path(uri).expanduser()
        if not p.exists():
            raise InputError(f"{p}: no such model folder (or give a runs:/ or models:/ URI)")
        return p
    from ..evaluation.record import Store

    store = Store(runs_dir, tracking_uri)
    dst = Path(tempfile.mkdtemp(prefix="ratspain-model-"))
    try:
        if uri.startswith("runs:/"):
            run_id, _, path = uri[len("runs:/"):].partition("/")
            return Path(store.client.download_artifacts(run_id, path, str(dst)))
        return _from_registry(store, uri, dst)
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"{uri}: cannot fetch the model from {store.uri} ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None


def _from_registry(store, uri: str, dst: Path) -> Path:
    """`models:/<name>/<version>` or `models:/<name>@<alias>` downloaded from the store's registry."""
    import mlflow.artifacts

    ref = uri[len("models:/"):].strip("/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        version = store.client.get_model_version_by_alias(name, alias).version
    else:
        name, _, version = ref.partition("/")
        if not version.isdigit():
            raise InputError(f"{uri}: expected models:/<name>/<version> or models:/<name>@<alias>")
    source = store.client.get_model_version_download_uri(name, version)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(dst), tracking_uri=store.uri))


def load_model(uri, runs_dir="ratspain-runs", tracking_uri: str | None = None, device: str = "auto", sandbox=None) -> TrainedModel:
    """A model folder, `runs:/<run>/model` or `models:/<name>/<version>` (or `@alias`), ready to `predict`.
    `sandbox`: the SandboxSettings of a sandboxed model's workers (default: sandboxed, default limits)."""
    return open_folder(local_copy(str(uri), runs_dir, tracking_uri), device, sandbox)
