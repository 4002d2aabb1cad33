"""A contact sheet: a few faces per subject (rows) and pain level (columns), for a README or a first look."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..paths import atomic_write_bytes

LEVELS = {0: "no pain", 1: "moderate", 2: "severe"}


def contact_sheet(dataset, out: Path, per_level: int = 2, size: int = 96, seed: int = 0) -> Path:
    """Write a PNG grid: one row per subject, `per_level` faces of each level (label when no level is known).

    Faces are drawn at random (seeded) within each (subject, level) cell; an empty cell stays blank."""
    import io

    from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's inline one) is left alone
    from PIL import Image

    t = dataset.table
    by = "level" if t["level"].notna().all() else "label"
    values = sorted(int(v) for v in t[by].dropna().unique())
    subjects = dataset.subjects
    rng = np.random.default_rng(seed)
    cols = len(values) * per_level
    fig = Figure(figsize=(1.1 * cols, 1.15 * len(subjects)))
    axes = fig.subplots(len(subjects), cols, squeeze=False)
    for r, s in enumerate(subjects):
        for c_i, v in enumerate(values):
            files = t.loc[(t["subject"] == s) & (t[by] == v), "file"].tolist()
            pick = rng.choice(len(files), size=min(per_level, len(files)), replace=False) if files else []
            for j in range(per_level):
                ax = axes[r][c_i * per_level + j]
                ax.set_xticks([]), ax.set_yticks([])
                for side in ax.spines.values():
                    side.set_visible(False)
                if j < len(pick):
                    with Image.open(files[pick[j]]) as im:
                        ax.imshow(np.asarray(im.convert("RGB").resize((size, size))))
                if r == 0 and j == 0:
                    ax.set_title(LEVELS.get(v, str(v)) if by == "level" else ("pain" if v else "no pain"), fontsize=8, loc="left")
                if c_i == 0 and j == 0:
                    ax.set_ylabel(f"rat {s}", fontsize=8)
    fig.suptitle(f"{dataset.name}: {per_level} faces per rat and {by}", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return atomic_write_bytes(Path(out), buf.getvalue())
