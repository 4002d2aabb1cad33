"""Decoded-image cache: each image decoded and resized once, reused by every method and fold.

Images are keyed by a digest of the file's bytes; a dataset at one size is stored as one `.npy`
bundle (N, size, size, 3) uint8 named by the digest of its keys, and memory-mapped when read back.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from ..paths import cache_dir


def file_key(path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:20]


def content_keys(files) -> tuple[str, ...]:
    with ThreadPoolExecutor(4) as pool:
        return tuple(pool.map(file_key, files))


def decode(path, size: int) -> np.ndarray:
    """RGB uint8 (size, size, 3): the whole image squashed to a square, as the paper resizes its crops."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR, reducing_gap=3.0)
        return np.asarray(im, dtype=np.uint8)


def load_images(dataset, size: int, progress=None) -> tuple[np.ndarray, tuple[str, ...]]:
    """All images of `dataset` at `size` px, in table order, and their content keys."""
    files = dataset.table["file"].tolist()
    keys = dataset.keys
    bundle = cache_dir() / "images" / f"{hashlib.sha1(('|'.join(keys) + f'@{size}').encode()).hexdigest()[:24]}.npy"
    if bundle.is_file():
        return np.load(bundle, mmap_mode="r"), keys
    out = np.empty((len(files), size, size, 3), np.uint8)

    def one(i: int) -> None:
        try:
            out[i] = decode(files[i], size)
        except (OSError, ValueError) as e:
            raise InputError(f"{dataset.table['where'].iloc[i]}: cannot decode {files[i]}: {e}") from None
        if progress:
            progress(1)

    with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
        list(pool.map(one, range(len(files))))
    bundle.parent.mkdir(parents=True, exist_ok=True)
    tmp = bundle.with_name(f".{bundle.name}.{os.getpid()}.tmp.npy")
    np.save(tmp, out)
    os.replace(tmp, bundle)
    return out, keys
