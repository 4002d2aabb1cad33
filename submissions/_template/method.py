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
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.feature import hog
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ratspain_bench.methods import Method, Predictions, TestSet, TrainSet


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

    def features(self, images: np.ndarray) -> np.ndarray:
        c = self.config
        grey = np.asarray(images, dtype=np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0
        return np.stack([hog(g, orientations=c.orientations, pixels_per_cell=(c.pixels_per_cell,) * 2,
                             cells_per_block=(c.cells_per_block,) * 2, feature_vector=True) for g in grey])

    def fit(self, train: TrainSet) -> None:
        labels = np.asarray(train.labels, dtype=int)
        self.constant = None
        if len(np.unique(labels)) < 2:  # a fold whose training rats show one class only
            self.constant = int(labels[0])
            return
        c = self.config
        self.model = make_pipeline(StandardScaler(), LogisticRegression(
            C=c.C, class_weight=None if c.class_weight == "none" else c.class_weight, max_iter=c.max_iter,
            random_state=self.context.seed))
        self.model.fit(self.features(train.images), labels)

    def predict(self, test: TestSet) -> Predictions:
        if self.constant is not None:
            return Predictions(np.full(len(test), self.constant), np.full(len(test), float(self.constant)))
        prob = self.model.predict_proba(self.features(test.images))[:, 1]
        return Predictions((prob >= 0.5).astype(int), prob)
