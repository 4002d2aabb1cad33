"""An example submission: HOG descriptors + logistic regression (scikit-image, scikit-learn).

The harness calls, once per leave-one-rat-out fold and on a fresh instance:
    method = HogLogReg(config, context)   # config: a frozen HogLogRegConfig; context.seed, context.cache_dir, ...
    method.fit(train)                     # train.images (N, S, S, 3) uint8 RGB, train.labels (N,) 0/1, train.subjects
    method.predict(test)                  # test.images, test.subjects -- never labels
and scores the returned `Predictions(labels, scores)` itself. Each fold runs in a fresh process inside
a sandbox that shows it only this folder, the fold's data and a private /tmp. Rules: return one 0/1
label and one probability of pain in [0, 1] per test image, in the order given; derive all randomness
from `self.context.seed` (the same seed must give the same predictions); read nothing from disk but
your own files (the harness hands you everything about the data).

Two tasks (`tasks` lists those the method supports; `self.context.task` says which one a fold runs):
`binary` (pain or not) and `au`, where `train.au` = {action unit: (N,) grades 0/1/2, -1 blank} and
`predict` returns a grade per AU: `Predictions.from_au_proba({au: (N, 3) grade probabilities})`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.feature import hog
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ratspain_bench.methods import Method, Predictions, TestSet, TrainSet
from ratspain_bench.tasks import AUS, BLANK, GRADES


@dataclass(frozen=True)
class HogLogRegConfig:
    """Every field is a parameter: settable in submission.toml [config], with --set NAME=VALUE, and searchable."""

    image_size: int = 64  # side of the square RGB images the harness hands to fit/predict
    orientations: int = 9
    pixels_per_cell: int = 8
    cells_per_block: int = 2
    C: float = 1.0  # inverse L2 regularisation strength
    class_weight: str = "balanced"  # balanced | none
    max_iter: int = 2000


class HogLogReg(Method):
    Config = HogLogRegConfig
    family = "hog-logreg"
    tasks = ("binary", "au")

    def features(self, images: np.ndarray) -> np.ndarray:
        c = self.config
        grey = np.asarray(images, dtype=np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0
        return np.stack([hog(g, orientations=c.orientations, pixels_per_cell=(c.pixels_per_cell,) * 2,
                             cells_per_block=(c.cells_per_block,) * 2, feature_vector=True) for g in grey])

    def fit(self, train: TrainSet) -> None:
        if self.context.task == "au":  # one model per action unit, on the images graded for it
            x = self.features(train.images)
            grades = {au: np.asarray(train.au[au], dtype=int) for au in AUS}
            self.au_models = {au: self.fit_one(x[g != BLANK], g[g != BLANK]) for au, g in grades.items()}
            return
        labels = np.asarray(train.labels, dtype=int)
        self.model = self.fit_one(self.features(train.images), labels)

    def fit_one(self, x: np.ndarray, y: np.ndarray):
        """Standardised features + logistic regression; just the class when `y` holds one (e.g. a fold whose
        training rats show one class only)."""
        if len(np.unique(y)) < 2:
            return int(y[0]) if len(y) else 0
        c = self.config
        model = make_pipeline(StandardScaler(), LogisticRegression(
            C=c.C, class_weight=None if c.class_weight == "none" else c.class_weight, max_iter=c.max_iter,
            random_state=self.context.seed))
        return model.fit(x, y)

    @staticmethod
    def proba(model, x: np.ndarray, classes) -> np.ndarray:
        """(N, len(classes)) probabilities; 0 for a class the model never saw."""
        out = np.zeros((len(x), len(classes)))
        if isinstance(model, int):
            out[:, classes.index(model)] = 1.0
        else:
            out[:, [classes.index(k) for k in model.classes_]] = model.predict_proba(x)
        return out

    def predict(self, test: TestSet) -> Predictions:
        x = self.features(test.images)
        if self.context.task == "au":
            return Predictions.from_au_proba({au: self.proba(m, x, GRADES) for au, m in self.au_models.items()})
        prob = self.proba(self.model, x, (0, 1))[:, 1]
        return Predictions((prob >= 0.5).astype(int), prob)
