"""The frozen-backbone feature cache: region features (K, C) per image and view, computed once.

A cache "space" is one setting of everything that changes a feature (`space_id`); inside it, view
0 is the test view (centre crop or resize) and views 1..V are training views, each a crop + flip
whose offsets are a hash of (image key, view) — so a view of an image is the same whichever batch
or fold computes it, and the cache is shared by every fold, by `timm:<model>` and PainSeeker on the
same backbone, and by every point of a sensitivity study.

Storage: a process-wide memory dict, plus (when a cache folder is given) one `.npz` shard per
computation under `<cache>/features/<space>/view<v>/`, read back on first use in a process.
Features are stored as float16 when they fit (|x| < 6e4), else float32.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from .augment import crop_flip, eval_view

class _Slot:
    """The features of one (space, view) in memory: arrays as computed or loaded (chunks) and where each key is."""

    def __init__(self):
        self.chunks: list[np.ndarray] = []
        self.where: dict[str, tuple[int, int]] = {}

    def add(self, keys, feats: np.ndarray) -> None:
        i = len(self.chunks)
        self.chunks.append(feats)
        for row, k in enumerate(keys):
            self.where.setdefault(str(k), (i, row))

    def __contains__(self, key) -> bool:
        return key in self.where

    def take(self, keys, out: np.ndarray) -> np.ndarray:
        """Rows of `keys` into `out`, one fancy-indexed copy per chunk (no per-key arrays)."""
        pos = np.array([self.where[k] for k in keys], dtype=np.int64).reshape(-1, 2)
        for c in np.unique(pos[:, 0]):
            m = pos[:, 0] == c
            out[m] = self.chunks[c][pos[m, 1]]
        return out


_MEMORY: dict[tuple[str, int], _Slot] = {}
_LOADED: set[tuple[str, int]] = set()


def space_id(model: str, **settings) -> str:
    """The cache space of one feature setting: the model plus every setting that changes a feature's value
    (weights, image and crop size, test view, flip, precision, memory layout), in one digest."""
    text = "|".join([model, *(f"{k}={settings[k]}" for k in sorted(settings)), "v2"])
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
    return f"{safe}-{hashlib.sha1(text.encode()).hexdigest()[:12]}"


def view_params(keys, view: int, h: int, w: int, crop: int, flip: bool):
    """Deterministic (tops, lefts, flips) of training view `view` (>= 1) for each image key."""
    tops, lefts, flips = [], [], []
    for k in keys:
        d = hashlib.sha1(f"{k}|view{view}".encode()).digest()
        tops.append(int.from_bytes(d[:4], "little") % (h - crop + 1))
        lefts.append(int.from_bytes(d[4:8], "little") % (w - crop + 1))
        flips.append(bool(d[8] & 1) and flip)
    return torch.tensor(tops), torch.tensor(lefts), torch.tensor(flips, dtype=torch.bool)


class FeatureCache:
    def __init__(self, space: str, root: Path | None = None):
        self.space = space
        self.root = Path(root) / "features" / space if root else None

    def _store(self, view: int) -> _Slot:
        slot = (self.space, view)
        store = _MEMORY.setdefault(slot, _Slot())
        if slot not in _LOADED and self.root is not None:
            _LOADED.add(slot)
            for shard in sorted((self.root / f"view{view}").glob("*.npz")):
                try:
                    with np.load(shard) as z:
                        store.add(z["keys"].tolist(), z["features"])
                except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                    continue  # a partial or foreign file: recomputed as needed
        return store

    def missing(self, keys, view: int) -> list[int]:
        store = self._store(view)
        return [i for i, k in enumerate(keys) if k not in store]

    def put(self, keys, view: int, feats: np.ndarray) -> None:
        store = self._store(view)
        feats = feats.astype(np.float16) if np.abs(feats).max(initial=0) < 6e4 else feats.astype(np.float32)
        store.add(keys, feats)
        if self.root is not None and len(keys):
            folder = self.root / f"view{view}"
            folder.mkdir(parents=True, exist_ok=True)
            name = hashlib.sha1("|".join(keys).encode()).hexdigest()[:20]
            tmp = folder / f".{name}.{os.getpid()}.tmp.npz"
            np.savez(tmp, keys=np.asarray(keys), features=feats)
            os.replace(tmp, folder / f"{name}.npz")

    def dtype(self, view: int) -> np.dtype:
        """What a view is stored as (float16, or float32 where values exceed float16's range)."""
        chunks = self._store(view).chunks
        return np.result_type(*{c.dtype for c in chunks}) if chunks else np.dtype(np.float16)

    def get(self, keys, view: int, out: np.ndarray | None = None) -> np.ndarray:
        """(N, K, C) features as stored (float16 or float32; the engine widens each batch to float32), into `out` if given."""
        store = self._store(view)
        if out is None:
            shape = store.chunks[store.where[keys[0]][0]].shape[1:] if len(keys) else (0, 0)
            out = np.empty((len(keys), *shape), self.dtype(view))
        return store.take(keys, out)


def fill(cache: FeatureCache, keys, images: torch.Tensor, views, encode, crop: int, test_crop: str, flip: bool,
         batch_size: int = 64) -> None:
    """Compute and store the features of every (image, view) the cache lacks. `encode(uint8 NHWC) -> (B, K, C)`."""
    keys = list(keys)
    h, w = images.shape[1:3]
    for view in views:
        todo = cache.missing(keys, view)
        if not todo:
            continue
        out = []
        for s in range(0, len(todo), batch_size):
            idx = todo[s:s + batch_size]
            if view == 0:
                batch = eval_view(images[idx], crop, test_crop)
            else:
                batch = crop_flip(images, *view_params([keys[i] for i in idx], view, h, w, crop, flip), crop,
                                  index=torch.as_tensor(idx))
            out.append(encode(batch).float().cpu().numpy())
        cache.put([keys[i] for i in todo], view, np.concatenate(out))
