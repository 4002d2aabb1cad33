"""Local binary patterns: code images cached per (image, radius), grid histograms derived from them.

The code image of an image depends on (image, P, R, variant) only, never on the grid or the fold:
it is computed once (scikit-image, in worker processes) and stored under the cache as uint8;
4x4, 8x8 and 16x16 histograms then come from it with one vectorised `bincount`.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.util import Finalize
from pathlib import Path

import numpy as np

N_BINS = {"nri_uniform": lambda p: p * (p - 1) + 3, "uniform": lambda p: p + 2, "default": lambda p: 2**p, "ror": lambda p: 2**p}


def n_bins(points: int, variant: str) -> int:
    return N_BINS[variant](points)


def gray(images: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of uint8 RGB images, as uint8 (what skimage.color.rgb2gray does, rounded)."""
    if images.shape[-1] != 3:
        return images  # already gray
    w = np.array([0.2125, 0.7154, 0.0721], np.float32)
    return np.clip(np.rint(images.astype(np.float32) @ w), 0, 255).astype(np.uint8)


def _codes(args) -> np.ndarray:
    from skimage.feature import local_binary_pattern

    imgs, points, radius, variant = args
    return np.stack([local_binary_pattern(im, points, radius, variant) for im in imgs]).astype(np.uint8 if n_bins(points, variant) <= 256 else np.uint16)


_POOL: tuple[int, int, ProcessPoolExecutor] | None = None  # (owner pid, workers, pool)


def _pool(jobs: int) -> ProcessPoolExecutor:
    """One worker pool per process, kept for the next call: a fresh pool per call (a fork and a scikit-image import
    in each worker) took 1.40-1.57 s for 256 images' codes where the kept pool took 0.87-1.34 s (one test, 2 cores).
    A forked child builds its own."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] != jobs:
        if _POOL is not None and _POOL[0] == os.getpid():
            _POOL[2].shutdown(wait=False, cancel_futures=True)
        pool = ProcessPoolExecutor(jobs)
        # a multiprocessing worker joins its child processes before its threads' exit hooks would stop this pool's
        # workers: stop them first, or such a worker never exits
        Finalize(pool, pool.shutdown, exitpriority=100)  # before its queues close theirs (10)
        _POOL = (os.getpid(), jobs, pool)
    return _POOL[2]


def compute_codes(gray_images: np.ndarray, points: int, radius: float, variant: str, jobs: int | None = None) -> np.ndarray:
    """LBP code images (N, H, W) with scikit-image, split over worker processes."""
    global _POOL
    jobs = jobs or min(2, os.cpu_count() or 1)
    if jobs == 1 or len(gray_images) < 16:
        return _codes((gray_images, points, radius, variant))
    chunks = [(c, points, radius, variant) for c in np.array_split(gray_images, jobs * 4)]
    try:
        return np.concatenate(list(_pool(jobs).map(_codes, chunks)))
    except BrokenProcessPool:  # a worker died (killed, out of memory): once more on a fresh pool
        _POOL = None
        return np.concatenate(list(_pool(jobs).map(_codes, chunks)))


def cached_codes(images: np.ndarray, keys, points: int, radius: float, variant: str, cache: Path | None) -> np.ndarray:
    """Code images for `images` (uint8 RGB or gray), read from / written to `cache/<setting>/<key>.npy`."""
    folder = None if cache is None else Path(cache) / "lbp" / f"{variant}-p{points}-r{radius:g}-{images.shape[1]}px"
    out = [None] * len(keys)
    missing = list(range(len(keys)))
    if folder is not None and folder.is_dir():
        missing = []
        for i, k in enumerate(keys):
            f = folder / f"{k}.npy"
            if f.is_file():
                out[i] = np.load(f)
            else:
                missing.append(i)
    if missing:
        new = compute_codes(gray(np.asarray(images[missing])), points, radius, variant)
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        for i, c in zip(missing, new):
            out[i] = c
            if folder is not None:
                tmp = folder / f".{keys[i]}.{os.getpid()}.tmp.npy"
                np.save(tmp, c)
                os.replace(tmp, folder / f"{keys[i]}.npy")
    return np.stack(out)


def cell_sizes(h: int, w: int, grid: int) -> np.ndarray:
    """(grid*grid,) pixels in each cell of an H x W image split into `grid` near-equal rows and columns."""
    rows = np.bincount(np.arange(h) * grid // h, minlength=grid)
    cols = np.bincount(np.arange(w) * grid // w, minlength=grid)
    return (rows[:, None] * cols[None, :]).ravel()


def grid_counts(codes: np.ndarray, grid: int, bins: int) -> np.ndarray:
    """Concatenated per-cell histograms of pattern counts (N, grid*grid*bins), as float32 (exact integers: a cell of
    fewer than 2^24 pixels). Cell boundaries split the H x W image into `grid` near-equal rows and columns (exact for
    224/4, 8, 16)."""
    n, h, w = codes.shape
    rows = (np.arange(h) * grid // h)[:, None]
    cols = (np.arange(w) * grid // w)[None, :]
    cell = (rows * grid + cols).astype(np.int64)  # (H, W)
    out = np.empty((n, grid * grid * bins), np.float32)
    for start in range(0, n, 64):  # bounded memory
        c = codes[start:start + 64].astype(np.int64)
        idx = (np.arange(len(c))[:, None, None] * (grid * grid) + cell[None]) * bins + c
        out[start:start + 64] = np.bincount(idx.ravel(), minlength=len(c) * grid * grid * bins).reshape(len(c), -1)
    return out


def grid_histograms(codes: np.ndarray, grid: int, bins: int) -> np.ndarray:
    """Concatenated per-cell histograms (N, grid*grid*bins), each cell L1-normalised (`grid_counts` over each
    cell's pixel count)."""
    n, h, w = codes.shape
    return (grid_counts(codes, grid, bins) / np.repeat(cell_sizes(h, w, grid), bins)[None, :]).astype(np.float32)


def exact_kernel(a: np.ndarray, b: np.ndarray, sizes: np.ndarray, bins: int) -> np.ndarray:
    """The linear kernel of L1-normalised cell histograms, sum over cells of (a_c . b_c) / n_c^2, from the counts
    `a` (N, F) and `b` (M, F), the same on every machine and in every order of images or features: the count products
    are summed by BLAS in float64, where every partial sum is an integer below 2^53 and so exact in any order; each
    group of cells of one size is then scaled once, and the groups added in a fixed order (at most four)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if int((sizes ** 2).sum()) >= 2 ** 53:  # a cell's products sum to at most n_c^2
        raise ValueError("cells too large for an exact float64 kernel")
    sizes = np.repeat(sizes, bins)
    out = np.zeros((len(a), len(b)), np.float64)
    for n in np.unique(sizes):  # ascending: a fixed order
        cols = np.flatnonzero(sizes == n)
        pa, pb = (a, b) if len(cols) == a.shape[1] else (a[:, cols], b[:, cols])
        out += (pa.astype(np.float64) @ pb.astype(np.float64).T) / float(n * n)
    return out
