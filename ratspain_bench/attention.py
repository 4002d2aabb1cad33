"""Where a model looks: attention-localisation against known action-unit regions.

For each test image, the share of the face covered by AU regions (boxes saved with the replica in
`au_regions.json`) is measured in each of the M x M regions of the attention map; the score is the
mean coverage of the top-k regions, and `chance` the mean coverage over all regions. A score above
chance means the model's highest-weighted regions sit on the pain-related parts of the face.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def load_au_regions(dataset) -> dict | None:
    path = Path(dataset.source).parent / "au_regions.json"
    return json.loads(path.read_text()) if path.is_file() else None


def coverage_grid(boxes: dict, width: int, height: int, m: int, crop: float = 1.0) -> np.ndarray:
    """(m, m) fraction of each region covered by the union of all AU boxes (pixel coordinates).

    `crop` < 1: the attention map covers the centred crop of that fraction of the image (test-time crop).
    """
    mask = np.zeros((height, width), bool)
    for box_list in boxes.values():
        for x0, y0, x1, y1 in box_list:
            mask[max(0, int(y0)):int(np.ceil(y1)), max(0, int(x0)):int(np.ceil(x1))] = True
    if crop < 1.0:
        ch, cw = round(height * crop), round(width * crop)
        top, left = (height - ch) // 2, (width - cw) // 2
        mask = mask[top:top + ch, left:left + cw]
        height, width = ch, cw
    rows = np.arange(height) * m // height
    cols = np.arange(width) * m // width
    starts_r = np.flatnonzero(np.r_[True, np.diff(rows) > 0])
    starts_c = np.flatnonzero(np.r_[True, np.diff(cols) > 0])
    sums = np.add.reduceat(np.add.reduceat(mask.astype(np.int32), starts_r, axis=0), starts_c, axis=1)
    counts = np.bincount(rows, minlength=m)[:, None] * np.bincount(cols, minlength=m)[None, :]
    return sums / counts


def localisation(attention: np.ndarray, images: list[str], regions: dict, image_size: tuple[int, int], k: int,
                 crop: float = 1.0) -> dict:
    """Mean AU coverage of the top-k attention regions, and the chance level, over images with regions."""
    top, chance = [], []
    w, h = image_size
    for att, image in zip(attention, images):
        if image not in regions:
            continue
        cov = coverage_grid(regions[image], w, h, att.shape[0], crop).ravel()
        order = np.argsort(-att.ravel(), kind="stable")[:k]
        top.append(cov[order].mean())
        chance.append(cov.mean())
    if not top:
        return {}
    return {"attention_au_share": float(np.mean(top)), "attention_au_share_chance": float(np.mean(chance))}
