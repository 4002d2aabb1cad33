"""Tiny datasets for tests: a few subjects, small images whose brightness pattern carries the label."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Deep-method settings small enough for a test: 48 px images, 40 px crops, two epochs, random weights.
TINY_DEEP = dict(image_size=48, crop_size=40, epochs=2, batch_size=8, weights="none", views=2)


def make_dataset(root: Path, subjects=("a", "b", "c"), per_subject: int = 8, size: int = 48, seed: int = 0) -> Path:
    """Write `root/manifest.csv` and PNG images; label 1 images have a bright blob, label 0 a dark one."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = ["path,subject,level,pose_bin"]
    for s in subjects:
        for i in range(per_subject):
            level = i % 3 if i % 2 else 0
            img = rng.integers(40, 90, (size, size, 3)).astype(np.uint8)
            c = size // 2 + rng.integers(-4, 5)
            img[c - 6:c + 6, c - 6:c + 6] = 220 if level else 10
            name = f"images/{s}_{i:02d}.png"
            Image.fromarray(img).save(root / name)
            rows.append(f"{name},{s},{level},{('frontal', 'moderate', 'extreme')[i % 3]}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root
