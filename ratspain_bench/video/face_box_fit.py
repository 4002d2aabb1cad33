"""Refit the renderer's face box model (`face_box.json`, used by `face_box.predict`): `python -m
ratspain_bench.video.face_box_fit` (about 80 s).

Faces drawn by `data.rat_face.draw_face` for rats `look_for(FIRST ...)` (jittered copies of the six designs, none of
the rats `synth --video` renders), two sessions each (odd rats' AUs raised in the second), poses and AUs from
`synth.timeline`; the faces with all five parts in view, each in COPIES copies with tracker jitter of JITTER x the
drawn size, against their true boxes (`rat_face._Face.face_box`). The outputs' range is saved with the coefficients.
"""
from __future__ import annotations

import json

import numpy as np

from ..data.rat_face import draw_face
from ..paths import atomic_write_text
from ..tasks import AUS
from . import face_box
from .faces import PARTS
from .synth import rat_look, timeline

FIRST, RATS, KEYS, SIZE, SEED = 1000, 120, 40, 72, 7  # renderer rats, keyframes each session, drawn px, timeline seed
JITTER, COPIES = 1 / 72, 4  # tracker jitter (a share of the drawn size), noisy copies of each face


def renderer_pairs(first: int = FIRST, rats: int = RATS, keys: int = KEYS, seed: int = SEED):
    """(points (N, 5, 2), seen (N, 5), boxes (N, 4)) of faces the renderer draws (see the module doc)."""
    points, seen, boxes = [], [], []
    for index in range(first, first + rats):
        look = rat_look(index)
        for session in (0, 1):
            rise = float(np.random.default_rng([seed, index]).uniform(0.8, 1.2)) if session and index % 2 else 0.0
            tl = timeline(seed, index, session, rise, keys, 2.0)
            for k in range(keys):
                rng = np.random.default_rng([seed, index, session, k])
                _, _, drawn = draw_face(look, dict(zip(AUS, tl["au"][k])), tuple(tl["pose"][k]), rng, SIZE, 92,
                                        look.blur * SIZE / 256, 1.0, float(tl["light"][k]), landmarks=True)
                parts = drawn["parts"]
                points.append([parts[p][:2] if p in parts else (np.nan, np.nan) for p in PARTS])
                seen.append([p in parts and parts[p][2] for p in PARTS])
                boxes.append(drawn["face"])
    return np.array(points, float), np.array(seen, bool), np.array(boxes, float)


def main() -> None:
    points, seen, boxes = renderer_pairs()
    points, boxes = points[seen.all(axis=1)], boxes[seen.all(axis=1)]
    rng = np.random.default_rng(SEED)
    noisy = np.vstack([points + rng.standard_normal(points.shape) * JITTER * SIZE for _ in range(COPIES)])
    coef = face_box.fit(noisy, np.vstack([boxes] * COPIES))
    out = face_box.features(noisy)[0] @ coef
    doc = {"about": "the face box from five keypoints (ratspain_bench.video.face_box), refit by "
                    "python -m ratspain_bench.video.face_box_fit", "faces": len(points),
           "coef": [[float(f"{v:.6g}") for v in row] for row in coef],
           "range": [[float(f"{v:.6g}") for v in out.min(axis=0)], [float(f"{v:.6g}") for v in out.max(axis=0)]]}
    atomic_write_text(face_box.MODEL, json.dumps(doc) + "\n")
    print(f"{face_box.MODEL}: fitted on {len(points)} faces")


if __name__ == "__main__":
    main()
