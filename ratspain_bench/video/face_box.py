"""The face's box from its five keypoints: a quadratic regression fitted on the replica renderer's rats.

The five parts (`faces.PARTS` order) are moved to their mean and divided by their RMS distance from it, so the model
sees neither where the face is nor how large it is. The box's centre offset and the log of its side, in those units,
are a ridge-regressed quadratic polynomial of the ten normalised coordinates (66 terms). The true box is the square
around the head's outline and ears (`rat_face._Face.face_box`); ear size, ear posture (an action unit) and head shape
move it in ways no one scale of the parts' spread follows (a box of fixed proportions to the parts: IoU >= 0.8 on 82%
of the clips' scorable frames, this model: 97%).

`face_box.json` beside this file holds the renderer's model, written by `python -m ratspain_bench.video.face_box_fit`
(see there). A lab with boxes drawn on its own rats can fit its own with `fit`.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

MODEL = Path(__file__).with_name("face_box.json")
RIDGE = 1e-3  # the ridge penalty, x the number of faces


def features(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X (N, 66): 1, the ten normalised coordinates, their squares and pairwise products; origin (N, 2); unit (N,))."""
    points = np.asarray(points, float)
    origin = points.mean(axis=1)
    unit = np.sqrt(((points - origin[:, None]) ** 2).sum(-1).mean(axis=1))
    q = ((points - origin[:, None]) / unit[:, None, None]).reshape(len(points), -1)
    i, j = np.triu_indices(q.shape[1])
    return np.hstack([np.ones((len(q), 1)), q, q[:, i] * q[:, j]]), origin, unit


def fit(points: np.ndarray, boxes: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    """Coefficients (66, 3) mapping `features(points)` to the box's centre offset (x, y) and log side, in units of the
    parts' spread; `boxes` (N, 4) x, y, w, h squares; ridge penalty `ridge` x N on every term."""
    x, origin, unit = features(points)
    boxes = np.asarray(boxes, float)
    centre = boxes[:, :2] + boxes[:, 2:] / 2
    y = np.column_stack([(centre - origin) / unit[:, None], np.log(boxes[:, 2] / unit)])
    return np.linalg.solve(x.T @ x + ridge * len(x) * np.eye(x.shape[1]), x.T @ y)


def predict(points: np.ndarray, coef: np.ndarray | None = None) -> np.ndarray:
    """Square boxes x, y, w, h (N, 4) of faces with keypoints `points` (N, 5, 2); `coef` from `fit` (None: the
    renderer's model, its outputs held within the range it was fitted on, so that parts no face takes do not send the
    box far off)."""
    x, origin, unit = features(points)
    if coef is None:
        coef, (lo, hi) = load()
        t = np.clip(x @ coef, lo, hi)
    else:
        t = x @ coef
    centre, side = origin + t[:, :2] * unit[:, None], np.exp(t[:, 2]) * unit
    return np.column_stack([centre - side[:, None] / 2, side, side])


@lru_cache(maxsize=1)
def load() -> tuple[np.ndarray, np.ndarray]:
    """The renderer's model: (coefficients (66, 3), the range of its fitted outputs (2, 3))."""
    doc = json.loads(MODEL.read_text(encoding="utf-8"))
    return np.asarray(doc["coef"], float), np.asarray(doc["range"], float)
