"""The method interface: a small class with a frozen config, `fit(train)` and `predict(test)`.

`fit` sees images, labels and subject ids of the training rats only (and, in the `au` task, their
consensus action-unit grades); `predict` sees test images and subject ids, never their labels (the
harness holds them and scores). A method lists the tasks it supports in `tasks` (see `ratspain_bench.tasks`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import pandas as pd

from ..errors import InputError


@dataclass(frozen=True, eq=False)
class TrainSet:
    images: np.ndarray  # (N, H, W, 3) uint8 RGB at the config's image_size
    labels: np.ndarray  # (N,) int, 0 no pain, 1 pain
    subjects: np.ndarray  # (N,) str
    keys: tuple[str, ...]  # content digest per image: a cache key for per-image features
    meta: pd.DataFrame | None = None  # pose columns when known; never labels or AU scores
    au: dict[str, np.ndarray] | None = None  # `au` task only: {action unit: (N,) consensus grades 0/1/2, -1 blank}

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, eq=False)
class TestSet:
    __test__ = False  # not a pytest class
    images: np.ndarray
    subjects: np.ndarray
    keys: tuple[str, ...]
    meta: pd.DataFrame | None = None

    def __len__(self) -> int:
        return len(self.images)


@dataclass(frozen=True, eq=False)
class Predictions:
    """What `predict` returns. The harness checks it (one 0/1 label and one probability of pain in [0, 1]
    per test image, in TestSet order; in the `au` task also a grade 0/1/2 per image for each of the four
    AUs) and fails the fold with the rule broken. In the `au` task the binary label scored is the one
    derived from the AU grades (`ratspain_bench.tasks.derived_label`); build it with `from_au_proba`."""

    labels: np.ndarray  # (N,) int 0/1
    scores: np.ndarray  # (N,) probability of pain in [0, 1]
    attention: np.ndarray | None = None  # (N, M, M) region weights (PainSeeker's beta), optional
    au: dict[str, np.ndarray] | None = None  # {action unit: (N,) grades 0/1/2}; required in the `au` task
    au_attention: dict[str, np.ndarray] | None = None  # {action unit: (N, M, M)} region weights per AU, optional

    def __post_init__(self):
        object.__setattr__(self, "labels", np.asarray(self.labels))
        object.__setattr__(self, "scores", np.asarray(self.scores))

    @classmethod
    def from_au_proba(cls, proba: dict[str, np.ndarray], **extra) -> "Predictions":
        """AU predictions from per-AU grade probabilities {au: (N, 3)}: grades by argmax, the label derived from
        them the paper's way, and the probability of pain that the AUs, taken as independent, give."""
        from ..tasks import AUS, by_au, derived_label, pain_probability

        p = np.stack([np.asarray(proba[a], dtype=float) for a in AUS], axis=1)  # (N, 4, 3)
        grades = p.argmax(axis=2)
        return cls(derived_label(grades), pain_probability(p), au=by_au(grades), **extra)


class NotSavable(InputError):
    """A method that cannot be saved, loaded or explained as a trained model; the message names it."""


def _quiet(*_a, **_k) -> None:
    return None


@dataclass
class Context:
    """What the harness lends a method for one fold."""

    seed: int = 0
    device: str = "cpu"
    profile: str = "quick"
    cache_dir: Path | None = None
    work_dir: Path | None = None  # files written here are logged as artifacts of the fold
    progress: Callable[..., None] = _quiet  # progress(epoch=i, epochs=n, loss=x) or progress(stage=text)
    log_metric: Callable[[str, float, int | None], None] = _quiet  # log_metric(name, value, step)
    task: str = "binary"  # `binary` or `au` (see `ratspain_bench.tasks`)


class Method:
    """Base class of every method. Subclasses set `Config` (a frozen dataclass) and implement fit/predict.

    A method declares everything else about itself here, in its own file:
    - `Config.PROFILES`: field overrides per profile name (`quick`, `paper`); `image_size` (a config
      field, default 224) is the side of the square images handed to fit/predict;
    - `parametric`: the config field that `family:<value>` sets (e.g. `model` for `timm:<model>`);
    - `suites`: suites the family's own name joins (`run --suite NAME`);
    - `SEARCH_SPACE`: what `study tune` searches ({name: {low, high, log} or {choices}});
    - `SENSITIVITY_GRID`, `PLOT_SYMBOLS`: the default grid of `study sensitivity` and axis symbols;
    - hooks: `preflight` (fail before any work), `prepare` and `parallel_folds` (work shared by all folds,
      done once; folds then light enough to run in parallel), `study_settings` (settings every study point
      must hold), `fits_together` / `fit_together` (several configs fitted on one fold at once, for a
      study's grid) and `attention_view` (how `Predictions.attention` maps onto the image, for localisation);
    - `tasks`: the tasks it supports (`binary`, `au`); in the `au` task `fit` gets `TrainSet.au` and `predict`
      returns `Predictions.au` (`Predictions.from_au_proba` builds it);
    - a saved model (`ratspain-bench train`): `save(folder)` writes the fitted state in the framework's own
      format, `load(config, folder, context)` reads it back for prediction on new images, `input_spec()`
      describes the preprocessing. The default refuses with the method's name: there is no pickle fallback,
      since a pickle of outside code is code run at load time.
    """

    Config: ClassVar[type]
    family: ClassVar[str] = ""
    parametric: ClassVar[str | None] = None
    suites: ClassVar[tuple[str, ...]] = ()
    tasks: ClassVar[tuple[str, ...]] = ("binary",)
    SEARCH_SPACE: ClassVar[dict] = {}
    SENSITIVITY_GRID: ClassVar[dict] = {}
    PLOT_SYMBOLS: ClassVar[dict] = {}
    predict_batch: ClassVar[int] = 64  # images per `predict` call when a saved model scores many images

    def __init__(self, config, context: Context | None = None):
        self.config = config
        self.context = context or Context()

    def fit(self, train: TrainSet) -> None:  # pragma: no cover - interface
        raise TypeError(f"{type(self).__name__} must implement fit(train)")

    def predict(self, test: TestSet) -> Predictions:  # pragma: no cover - interface
        raise TypeError(f"{type(self).__name__} must implement predict(test)")

    @classmethod
    def prepare(cls, config, images: np.ndarray, keys: tuple[str, ...], context: Context) -> None:
        """Work every fold shares, done once for all images before the folds (e.g. cached backbone features)."""

    @classmethod
    def parallel_folds(cls, config, device: str) -> bool:
        """Whether folds are light enough, once `prepare` ran, to share the cores in parallel processes."""
        return False

    @classmethod
    def preflight(cls, config) -> None:
        """Raise an InputError now if this config cannot run here (e.g. weights that cannot be had), before any work."""

    @classmethod
    def fits_together(cls, configs: list, task: str) -> bool:
        """Whether `fit_together` fits these configs as one (sharing work a separate fit of each would repeat); the
        harness then names their job folders by the whole group, since the float rounding of a joint fit is its own."""
        return False

    @classmethod
    def fit_together(cls, methods: list["Method"], train: TrainSet) -> None:
        """Fit every method (instances of this class, one config each) on the same training set: by default one by one."""
        for m in methods:
            m.fit(train)

    @classmethod
    def study_settings(cls, config, grid: dict) -> tuple[dict, str]:
        """Settings (public names) that every point of a sensitivity study over `grid` must hold, and a note; `grid` is
        {} when the user gave the grid or the crop. A setting the user fixed with --set wins."""
        return {}, ""

    def attention_view(self) -> tuple[int, float]:
        """(top-k regions scored, fraction of the image side the attention map covers) for localisation."""
        return 5, 1.0

    def save(self, folder: Path) -> None:
        """Write the fitted state into `folder` (the config is saved beside it by the caller)."""
        raise NotSavable(f"{self.family or type(self).__name__}: {type(self).__name__} cannot be saved as a model "
                         "(it implements no save(folder) / load(config, folder, context))")

    @classmethod
    def load(cls, config, folder: Path, context: Context | None = None) -> "Method":
        """A method ready to `predict`, from what `save` wrote; it keeps nothing per image it is asked about."""
        raise NotSavable(f"{cls.family or cls.__name__}: {cls.__name__} cannot load a saved model (it implements no load)")

    def input_spec(self) -> dict:
        """What `predict` expects of an image, for the model card and MLmodel metadata."""
        return {"image_size": image_size(self.config), "colour": "RGB uint8",
                "resize": "the whole image, bilinear, to image_size x image_size (alpha dropped, gray expanded)"}

    def explain(self, test: TestSet, pred: Predictions, names: list[str], out_dir: Path) -> list[Path]:
        """One picture per image of what the model looked at (`predict --explain`); paths in `names` order."""
        raise NotSavable(f"{self.family or type(self).__name__}: no attention maps to explain (--explain needs PainSeeker)")


def image_size(config) -> int:
    return int(getattr(config, "image_size", 224))


# ---------------------------------------------------------------- configs and their public names


def public_name(f: dataclasses.Field) -> str:
    """A config field's name on the command line and in outputs (metadata `name`, e.g. `lambda`)."""
    return f.metadata.get("name", f.name)


def config_params(config) -> dict[str, Any]:
    """The config as {public name: value}."""
    return {public_name(f): getattr(config, f.name) for f in dataclasses.fields(config)}


def make_config(cls, profile: str | None = None, **params):
    """Build a config from public names, applying `cls.PROFILES[profile]` first; unknown names raise."""
    fields = {public_name(f): f for f in dataclasses.fields(cls)}
    values = dict(getattr(cls, "PROFILES", {}).get(profile, {})) if profile else {}
    for key, value in params.items():
        if key not in fields:
            import difflib

            near = difflib.get_close_matches(key, list(fields), n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else f"; known: {', '.join(fields)}"
            raise KeyError(f"{cls.__qualname__} has no parameter {key!r}{hint}")
        values[key] = _coerce(fields[key], value)
    return cls(**{fields[k].name: v for k, v in values.items()})


def _coerce(f: dataclasses.Field, value):
    """Turn command-line strings into the field's type (int, float, bool, str)."""
    if not isinstance(value, str):
        return value
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    if kind == "bool":
        return value.lower() in ("1", "true", "yes", "on")
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    return value


def field_of(name: str, default, **kw):
    """A config field whose public name differs from its Python name (e.g. `lambda`)."""
    return field(default=default, metadata={"name": name, **kw})
