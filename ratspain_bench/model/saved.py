"""A trained model on disk and in memory.

On disk it is an MLflow pyfunc folder (`MLmodel`, the pyfunc wrapper, requirements, `MODEL_CARD.md`)
whose artifact `artifacts/ratspain/` holds `model.json` (what was trained, on what data, with which
config and code) and `method/` (the fitted method in its own format: `Method.save`). In memory it is a
`TrainedModel`: the method loaded by `Method.load`, and `predict(images)`.

Loading checks the folder's format version (a newer or unknown one is refused with the reason) and
compares the code hash it was trained with to this installation's: when they differ it loads, with a
`CodeChangedWarning` naming both, since the model card's LORO evidence was measured with the old code.
"""
from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import Iterator

import pandas as pd

from ..errors import InputError
from ..methods.base import Context, Method, make_config
from ..methods.registry import get_method

FORMAT = 1
STATE = "ratspain"  # the MLflow artifact holding model.json and method/
META_FILE = "model.json"
METHOD_DIR = "method"
CARD = "MODEL_CARD.md"
SYNTHETIC_NOTE = ("trained on the synthetic replica (rendered faces, not rats): for trying the tool only; "
                  "it must not be used on real animals")


class SyntheticDataWarning(UserWarning):
    """A model trained on the synthetic replica was asked to score images."""


class CodeChangedWarning(UserWarning):
    """A model saved by other code than this installation's (its card's evidence may not hold)."""


warnings.filterwarnings("always", category=SyntheticDataWarning)  # every call says it, not only the first


def write_state(folder: Path, method, meta: dict) -> Path:
    """`folder/model.json` and the fitted method in `folder/method/`."""
    (folder / METHOD_DIR).mkdir(parents=True)
    method.save(folder / METHOD_DIR)
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
        if explain is not None and type(self.method).explain is Method.explain:  # refused before any work
            raise InputError(f"{self.meta['method']}: no attention maps to explain (--explain needs PainSeeker)")
        size = batch_size or self.method.predict_batch
        for frame in score_batches(self.method, items, self.image_size, size, None if explain is None else Path(explain), progress):
            if self.synthetic:
                frame["warning"] = SYNTHETIC_NOTE
            yield frame

    def predict(self, images, batch_size: int | None = None, explain=None) -> pd.DataFrame:
        """One row per image: `image`, `pain_probability`, `pain` (0/1, the method's decision: p > 0.5),
        `au_<name>` when the method grades action units, `error` (empty when scored), `explain` (with
        `explain=DIR`: the attention picture written there), `warning` (models trained on the replica).
        `images`: a file, a folder (recursive), a manifest CSV, a list of those, or a DataFrame with `path`."""
        frames = list(self.batches(images, batch_size, explain))
        return pd.concat(frames, ignore_index=True)


def open_folder(folder: Path, device: str = "auto") -> TrainedModel:
    """A model folder (with MLmodel) or its state folder, loaded."""
    from ..evaluation.identity import code_hash

    folder = Path(folder)
    state = folder / "artifacts" / STATE if (folder / "MLmodel").is_file() else folder
    if not (state / META_FILE).is_file():
        raise InputError(f"{folder}: not a model folder (no MLmodel with a {STATE} artifact; make one with `ratspain-bench train`)")
    meta = read_meta(state)
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


def load_model(uri, runs_dir="ratspain-runs", tracking_uri: str | None = None, device: str = "auto") -> TrainedModel:
    """A model folder, `runs:/<run>/model` or `models:/<name>/<version>` (or `@alias`), ready to `predict`."""
    return open_folder(local_copy(str(uri), runs_dir, tracking_uri), device)
