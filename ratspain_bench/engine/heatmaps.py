"""Figure-4-style pictures: a region-weight grid (PainSeeker's beta) over the face the model saw."""
from __future__ import annotations

from pathlib import Path

import numpy as np

POSE_BINS = ("frontal", "moderate", "extreme")


def choose(meta, scores: np.ndarray, n: int) -> list[tuple[int, str]]:
    """Up to `n` test images: across pose bins when `meta` has `pose_bin` (the highest pain scores of
    each bin, round-robin), else the highest pain scores. Returns (index, tag) pairs."""
    order = np.argsort(-np.asarray(scores), kind="stable")
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


def save_heatmaps(faces: np.ndarray, betas: np.ndarray, tags, scores, out_dir, prefix: str = "beta") -> list[Path]:
    """One PNG per face (`{prefix}_{i}_{tag}.png`) plus `{prefix}_heatmaps.png` with all of them."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []

    def draw(ax, face, beta, title):
        h, w = face.shape[:2]
        ax.imshow(face)
        im = ax.imshow(beta, cmap="jet", alpha=0.45, extent=(0, w, h, 0), interpolation="nearest",
                       vmin=0, vmax=float(beta.max()) or 1.0)
        m_rows, m_cols = beta.shape
        for r in range(1, m_rows):
            ax.axhline(r * h / m_rows, color="white", lw=0.5, alpha=0.6)
        for c in range(1, m_cols):
            ax.axvline(c * w / m_cols, color="white", lw=0.5, alpha=0.6)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
        return im

    for i, (face, beta, tag, s) in enumerate(zip(faces, betas, tags, scores)):
        fig = Figure(figsize=(3.2, 3.2))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        im = draw(ax, face, beta, f"{tag}: p(pain) = {s:.2f}")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        path = out_dir / f"{prefix}_{i}_{tag}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        paths.append(path)
    if len(faces):
        fig = Figure(figsize=(2.6 * len(faces), 2.8))
        FigureCanvasAgg(fig)
        for i, (face, beta, tag, s) in enumerate(zip(faces, betas, tags, scores)):
            draw(fig.add_subplot(1, len(faces), i + 1), face, beta, f"{tag} {s:.2f}")
        path = out_dir / f"{prefix}_heatmaps.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        paths.append(path)
    return paths
