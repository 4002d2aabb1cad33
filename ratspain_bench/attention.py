"""Where a model looks: attention-localisation against known action-unit regions.

For each test image, the share of the face covered by AU regions (boxes saved with the replica in
`au_regions.json`) is measured in each of the M x M regions of the attention map; the score is the
mean coverage of the top-k regions, and `chance` the mean coverage over all regions. A score above
chance means the model's highest-weighted regions sit on the pain-related parts of the face.

`localisation_per_au` scores each AU's own attention map (PainSeeker-AU's beta_a, `Predictions.au_attention`)
against that AU's own boxes only, over the images where that AU is visible (has a box).
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np


def load_au_regions(dataset) -> dict | None:
    path = Path(dataset.source).parent / "au_regions.json"
    return json.loads(path.read_text()) if path.is_file() else None


def coverage_grid(boxes: dict, width: int, height: int, m: int, crop: float = 1.0) -> np.ndarray:
    """(m, m) fraction of each region covered by the union of all AU boxes (pixel coordinates).

    `crop` < 1: the attention map covers the centred crop of that fraction of the image (test-time crop).
    Remembered per (boxes, size, m, crop): the configs of a study fold score the same images.
    """
    frozen = tuple((au, tuple(tuple(b) for b in box_list)) for au, box_list in boxes.items())
    return _coverage(frozen, width, height, m, crop)


@functools.lru_cache(maxsize=4096)
def _coverage(boxes: tuple, width: int, height: int, m: int, crop: float) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    for _, box_list in boxes:
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
    out = sums / counts
    out.flags.writeable = False
    return out


def _shares(attention: np.ndarray, boxes: list[dict | None], image_size: tuple[int, int], k: int, crop: float) -> dict:
    """{"share": mean coverage of the top-k attention regions, "chance": mean over all regions}, over the images
    whose `boxes` ({au: [box, ...]}) is not None; {} when there is none."""
    top, chance = [], []
    w, h = image_size
    for att, b in zip(attention, boxes):
        if b is None:
            continue
        cov = coverage_grid(b, w, h, att.shape[0], crop).ravel()
        order = np.argsort(-att.ravel(), kind="stable")[:k]
        top.append(cov[order].mean())
        chance.append(cov.mean())
    return {"share": float(np.mean(top)), "chance": float(np.mean(chance))} if top else {}


def localisation(attention: np.ndarray, images: list[str], regions: dict, image_size: tuple[int, int], k: int,
                 crop: float = 1.0) -> dict:
    """Mean AU coverage of the top-k attention regions, and the chance level, over images with regions."""
    r = _shares(attention, [regions.get(image) for image in images], image_size, k, crop)
    return {"attention_au_share": r["share"], "attention_au_share_chance": r["chance"]} if r else {}


def localisation_per_au(au_attention: dict[str, np.ndarray], images: list[str], regions: dict,
                        image_size: tuple[int, int], k: int, crop: float = 1.0) -> dict:
    """Per AU: the mean coverage by that AU's own boxes of the top-k regions of its own attention map
    (`attention_<au>_share`, e.g. `attention_orbital_share`) and the chance level (`attention_<au>_share_chance`),
    over the images where that AU has a box; an AU visible in no image is left out."""
    out = {}
    for au, attention in au_attention.items():
        boxes = [{au: regions[image][au]} if regions.get(image, {}).get(au) else None for image in images]
        r = _shares(attention, boxes, image_size, k, crop)
        if r:
            out[f"attention_{au}_share"], out[f"attention_{au}_share_chance"] = r["share"], r["chance"]
    return out
