"""LBP + linear SVM, the paper's hand-crafted baseline (Table 3, rows LBPR{1,3}P8 (g x g)).

Paper setting (Sec. "Comparison methods and implementation detail"): LBP histograms on a g x g grid
(g = 4, 8, 16) of the face, concatenated; radius R in {1, 3} with P = 8 points (the text swaps the
letters); linear-kernel SVM, k(x, y) = x^T y, C = 1; faces resized to 224 x 224.
Choices where the paper is silent (configurable): the LBP variant, default `nri_uniform` (the 59
uniform patterns of Ahonen et al., standard in facial-expression work); grayscale by ITU-R 601
luma; each cell histogram L1-normalised, which is per-image scaling, so no statistics cross from
test to train and the kernel can be shared between folds.

Speed without changing the arithmetic: code images are cached per (image, R); the linear kernel is
computed as Gram blocks X_a X_b^T per pair of subjects, memoised in the process, so the six LORO
folds share them; `SVC(kernel="precomputed")` then gives the same solution as `SVC(kernel="linear")`.

A saved model (`save`/`load`) is the fitted SVC and the histograms of its support vectors (joblib): the
kernel of a new image needs no other training image, and nothing is memoised per image it scores.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.svm import SVC

from ..features.lbp import cached_codes, gray, grid_histograms, n_bins
from .base import Context, Method, Predictions, TestSet, TrainSet

_FEATURES: dict[tuple, np.ndarray] = {}  # (setting, image key) -> feature vector
_GRAM: dict[tuple, np.ndarray] = {}  # (setting, block digest a, block digest b) -> X_a X_b^T


@dataclass(frozen=True)
class LbpSvmConfig:
    radius: float = 1
    points: int = 8
    grid: int = 4
    variant: str = "nri_uniform"
    C: float = 1.0
    image_size: int = 224


class LbpSvm(Method):
    Config = LbpSvmConfig
    family = "lbp"
    SEARCH_SPACE = {"C": {"low": 0.001, "high": 100.0, "log": True}}
    MODEL_FILE = "svm.joblib"
    predict_batch = 256  # each call computes its code images in a fresh process pool: large batches amortise its start

    def __init__(self, config, context=None):
        super().__init__(config, context)
        self._support_x: np.ndarray | None = None  # a loaded model: histograms of the support vectors only

    @classmethod
    def prepare(cls, config, images, keys, context) -> None:
        """Every image's code image (cached on disk per image and radius) and grid histograms, once."""
        cls(config, context).features(images, list(keys))

    def _setting(self) -> tuple:
        c = self.config
        return (c.variant, c.points, float(c.radius), c.grid, c.image_size)

    def features(self, images: np.ndarray, keys) -> np.ndarray:
        """(N, grid*grid*bins) histograms, memoised per image key (a loaded model memoises nothing)."""
        c = self.config
        if self._support_x is not None:  # gray in slices: no float copy of the whole batch
            g = np.concatenate([gray(np.asarray(images[s:s + 64])) for s in range(0, len(images), 64)])
            codes = cached_codes(g, list(keys), c.points, c.radius, c.variant, None)
            return grid_histograms(codes, c.grid, n_bins(c.points, c.variant))
        s = self._setting()
        todo = [i for i, k in enumerate(keys) if (s, k) not in _FEATURES]
        if todo:
            codes = cached_codes(np.asarray(images)[todo], [keys[i] for i in todo], c.points, c.radius, c.variant, self.context.cache_dir)
            for i, f in zip(todo, grid_histograms(codes, c.grid, n_bins(c.points, c.variant))):
                _FEATURES[(s, keys[i])] = f
        return np.stack([_FEATURES[(s, k)] for k in keys])

    def _blocks(self, images, keys, subjects) -> list[tuple[str, np.ndarray]]:
        """Rows grouped by subject, each with a digest of its image keys."""
        out = []
        for subj in dict.fromkeys(subjects):
            idx = np.flatnonzero(subjects == subj)
            digest = hashlib.sha1("|".join(keys[i] for i in idx).encode()).hexdigest()
            out.append((digest, idx))
        return out

    def _gram(self, a_blocks, b_blocks, a_feats, b_feats, n_a, n_b) -> np.ndarray:
        s = self._setting()
        g = np.empty((n_a, n_b), np.float64)
        for da, ia in a_blocks:
            for db, ib in b_blocks:
                key = (s, da, db)
                if key not in _GRAM:
                    _GRAM[key] = a_feats(ia).astype(np.float64) @ b_feats(ib).astype(np.float64).T
                g[np.ix_(ia, ib)] = _GRAM[key]
        return g

    def fit(self, train: TrainSet) -> None:
        keys = list(train.keys)
        self._train_x = self.features(train.images, keys)
        self._train_blocks = self._blocks(train.images, keys, np.asarray(train.subjects))
        x = self._train_x
        gram = self._gram(self._train_blocks, self._train_blocks, lambda i: x[i], lambda i: x[i], len(x), len(x))
        self._svm = SVC(kernel="precomputed", C=self.config.C).fit(gram, np.asarray(train.labels))

    def predict(self, test: TestSet) -> Predictions:
        keys = list(test.keys)
        xt = self.features(test.images, keys)
        if self._support_x is not None:  # only the support vectors' columns of the kernel are read
            gram = np.zeros((len(xt), self._svm.shape_fit_[0]))
            gram[:, self._svm.support_] = xt.astype(np.float64) @ self._support_x.astype(np.float64).T
        else:
            x = self._train_x
            blocks = self._blocks(test.images, keys, np.asarray(test.subjects))
            gram = self._gram(blocks, self._train_blocks, lambda i: xt[i], lambda i: x[i], len(xt), len(x))
        decision = self._svm.decision_function(gram)  # > 0 means classes_[1], i.e. pain
        labels = self._svm.predict(gram)
        # Not a calibrated probability: a logistic squashing of the SVM margin, monotone in it.
        return Predictions(labels, 1.0 / (1.0 + np.exp(-decision)))

    def save(self, folder: Path) -> None:
        """The fitted SVC and its support vectors' histograms, with joblib (scikit-learn's own format)."""
        import joblib

        joblib.dump({"svm": self._svm, "support_x": self._train_x[self._svm.support_]}, Path(folder) / self.MODEL_FILE)

    @classmethod
    def load(cls, config, folder: Path, context: Context | None = None) -> "LbpSvm":
        import joblib

        state = joblib.load(Path(folder) / cls.MODEL_FILE)
        method = cls(config, context)
        method._svm, method._support_x = state["svm"], state["support_x"]
        return method

    def input_spec(self) -> dict:
        return {**super().input_spec(), "grayscale": "ITU-R 601 luma (scikit-image rgb2gray weights), after resizing",
                "features": f"LBP {self.config.variant} P={self.config.points} R={self.config.radius:g}, "
                            f"{self.config.grid}x{self.config.grid} grid of L1-normalised histograms"}
