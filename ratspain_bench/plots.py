"""Small figures logged with runs (a matplotlib Figure drawn to PNG: no pyplot, no global backend change)."""
from __future__ import annotations

from pathlib import Path


def confusion_png(path: Path, tp: int, fp: int, fn: int, tn: int, title: str) -> Path:
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's inline one) is left alone

    fig = Figure(figsize=(3.2, 3))
    ax = fig.subplots()
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
    return path


def fixed_margins(fig, left: float, right: float, top: float, bottom: float, wspace: float = 0.2, hspace: float = 0.2) -> None:
    """Margins in inches, set directly: `tight_layout` measures every text first, most of a small figure's time."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=left / w, right=1 - right / w, top=1 - top / h, bottom=bottom / h, wspace=wspace, hspace=hspace)
