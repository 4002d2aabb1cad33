"""Figure-4-style pictures: a region-weight grid (PainSeeker's beta) over the face the model saw."""
from __future__ import annotations

from pathlib import Path

import numpy as np

POSE_BINS = ("frontal", "moderate", "extreme")


def choose(meta, scores: np.ndarray, n: int, keys=None) -> list[tuple[int, str]]:
    """Up to `n` test images: across pose bins when `meta` has `pose_bin` (the highest pain scores of
    each bin, round-robin), else the highest pain scores; equal scores in the order of `keys` when given
    (the same images whatever order the test set came in). Returns (index, tag) pairs."""
    scores = np.asarray(scores)
    order = np.lexsort((np.asarray(keys), -scores)) if keys is not None and len(keys) else np.argsort(-scores, kind="stable")
    if meta is not None and "pose_bin" in getattr(meta, "columns", ()):
        bins = np.asarray(meta["pose_bin"].astype(str))
        queues = {b: [i for i in order if bins[i] == b] for b in POSE_BINS}
        queues = {b: q for b, q in queues.items() if q}
        picked: list[tuple[int, str]] = []
        while len(picked) < n and any(queues.values()):
            for b, q in queues.items():
                if q and len(picked) < n:
                    picked.append((int(q.pop(0)), b))
        if picked:
            return picked
    return [(int(i), "test") for i in order[:n]]


def _jet() -> np.ndarray:
    """The 'jet' colour map as a (256, 3) uint8 table."""
    from matplotlib import colormaps

    return (colormaps["jet"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def overlay(face: np.ndarray, beta: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The region weights over the face: each region coloured by beta / max(beta) on 'jet', the grid in white."""
    h, w = face.shape[:2]
    m_rows, m_cols = beta.shape
    level = np.clip(np.rint(255 * beta / (float(beta.max()) or 1.0)), 0, 255).astype(np.uint8)
    rows, cols = np.arange(h) * m_rows // h, np.arange(w) * m_cols // w
    heat = _jet()[level[rows[:, None], cols[None, :]]]
    out = (face.astype(np.float32) * (1 - alpha) + heat * alpha)
    edge_r = np.flatnonzero(np.diff(rows)) + 1
    edge_c = np.flatnonzero(np.diff(cols)) + 1
    out[edge_r, :] = out[edge_r, :] * 0.4 + 255 * 0.6
    out[:, edge_c] = out[:, edge_c] * 0.4 + 255 * 0.6
    return out.round().astype(np.uint8)


def _tile(face, beta, title: str):
    """One face with its overlay, a title above and a colour bar (0 .. max beta) at the right."""
    from PIL import Image, ImageDraw

    body = Image.fromarray(overlay(face, beta))
    h, w = face.shape[:2]
    bar = np.repeat(_jet()[::-1][np.linspace(0, 255, h).astype(int)][:, None, :], 10, axis=1)
    tile = Image.new("RGB", (w + 60, h + 18), "white")
    tile.paste(body, (0, 18))
    tile.paste(Image.fromarray(bar), (w + 6, 18))
    draw = ImageDraw.Draw(tile)
    draw.text((2, 3), title, fill="black")
    draw.text((w + 19, 18), f"{float(beta.max()):.3f}", fill="black")
    draw.text((w + 19, h + 6), "0", fill="black")
    return tile


def save_heatmaps(faces: np.ndarray, betas: np.ndarray, tags, scores, out_dir, prefix: str = "beta") -> list[Path]:
    """One PNG per face (`{prefix}_{i}_{tag}.png`) plus `{prefix}_heatmaps.png` with all of them side by side.

    Drawn with PIL on a 'jet' table (a few ms a face; a matplotlib figure per face cost ~0.4 s, paid in every
    fold of every PainSeeker run)."""
    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, tiles = [], []
    for i, (face, beta, tag, s) in enumerate(zip(faces, betas, tags, scores)):
        tile = _tile(np.asarray(face), np.asarray(beta, dtype=float), f"{tag}: p(pain) = {s:.2f}")
        path = out_dir / f"{prefix}_{i}_{tag}.png"
        tile.save(path, compress_level=1)
        paths.append(path)
        tiles.append(tile)
    if tiles:
        sheet = Image.new("RGB", (sum(t.width for t in tiles), max(t.height for t in tiles)), "white")
        x = 0
        for t in tiles:
            sheet.paste(t, (x, 0))
            x += t.width
        path = out_dir / f"{prefix}_heatmaps.png"
        sheet.save(path, compress_level=1)
        paths.append(path)
    return paths
