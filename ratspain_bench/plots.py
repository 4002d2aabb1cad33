"""Small figures logged with runs (matplotlib, Agg backend)."""
from __future__ import annotations

from pathlib import Path


def confusion_png(path: Path, tp: int, fp: int, fn: int, tn: int, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.2, 3))
    m = [[tn, fp], [fn, tp]]
    ax.imshow(m, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(m[i][j]), ha="center", va="center", fontsize=12)
    ax.set_xticks([0, 1], ["no pain", "pain"])
    ax.set_yticks([0, 1], ["no pain", "pain"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
