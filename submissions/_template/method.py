"""A minimal method: the interface and nothing else. Nearest class centroid on small grey images (NumPy only).

The harness calls, once per leave-one-rat-out fold and on a fresh instance:
    method = MyMethod(config, context)   # config: a frozen MyConfig; context.seed, context.task, ...
    method.fit(train)                    # train.images (N, S, S, 3) uint8 RGB, train.labels (N,) 0/1, train.subjects
    method.predict(test)                 # test.images, test.subjects -- never labels
and scores the returned `Predictions(labels, scores)` itself: one 0/1 label and one probability of pain in [0, 1]
per test image, in the order given. Each fold runs in a fresh sandboxed process that sees only this folder, the
fold's data and a private /tmp. A fuller example (HOG + logistic regression, both tasks): examples/hog-logreg/.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ratspain_bench.methods import Method, Predictions, TestSet, TrainSet


@dataclass(frozen=True)
class MyConfig:
    """Every field is a parameter: settable in submission.toml [config], with --set NAME=VALUE, and searchable."""

    image_size: int = 32  # side of the square RGB images the harness hands to fit/predict
    temperature: float = 0.1  # how sharply the distance difference turns into a probability


class MyMethod(Method):
    Config = MyConfig
    family = "template-example"

    def features(self, images: np.ndarray) -> np.ndarray:
        grey = np.asarray(images, dtype=np.float32).mean(axis=3) / 255.0
        return grey.reshape(len(grey), -1)

    def fit(self, train: TrainSet) -> None:
        x, y = self.features(train.images), np.asarray(train.labels)
        self.centroids = [x[y == k].mean(axis=0) if (y == k).any() else x.mean(axis=0) for k in (0, 1)]

    def predict(self, test: TestSet) -> Predictions:
        x = self.features(test.images)
        d0, d1 = (np.sqrt(((x - c) ** 2).mean(axis=1)) for c in self.centroids)
        prob = 1.0 / (1.0 + np.exp(np.clip((d1 - d0) / self.config.temperature, -50, 50)))
        return Predictions((prob >= 0.5).astype(int), prob)
