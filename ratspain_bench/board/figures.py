"""The page's figures as PNG bytes (matplotlib's Agg canvas directly: no pyplot, no global backend change)."""
from __future__ import annotations

import io

import numpy as np

from .table import Leaderboard

MAX_BAR_ROWS = 8


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def _short(label: str, n: int = 34) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def f1_heatmap(lb: Leaderboard) -> bytes:
    """Per-rat F1 (and the pooled column) of every complete row, the baselines and the paper's rows."""
    cols = list(lb.subjects) + ["pooled"]
    labels, values = [], []
    for r in lb.rows:
        labels.append(_short(r.label))
        values.append([r.per_subject.get(s, {}).get("f1", np.nan) for s in lb.subjects] + [r.pooled["f1"]])
    n_repro = len(labels)
    for ref in lb.reference:
        labels.append(_short(ref["label"]))
        values.append([ref["per_subject"].get(s, {}).get("f1", np.nan) for s in lb.subjects] + [ref["pooled"]["f1"]])
    data = np.array(values, dtype=float) if values else np.zeros((0, len(cols)))
    fig = _figure(1.6 + 0.75 * len(cols) + 2.2, 1.2 + 0.32 * max(len(labels), 1))
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(data), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            if not np.isnan(data[i, j]):
                ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if data[i, j] > 0.6 else "white")
    ax.set_xticks(range(len(cols)), [f"Rat#{s}" for s in lb.subjects] + ["LORO pooled"], fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    if lb.reference and n_repro:
        ax.axhline(n_repro - 0.5, color="white", linewidth=3)
    ax.axvline(len(lb.subjects) - 0.5, color="white", linewidth=3)
    ax.set_title(f"F1 per held-out rat: {lb.dataset}", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label="F1 (pain)")
    fig.tight_layout()
    return _png(fig)


def per_rat_bars(lb: Leaderboard) -> bytes:
    """Grouped bars of per-rat F1 and accuracy for the top rows and the majority baseline."""
    rows = list(lb.ranked[:MAX_BAR_ROWS]) + [r for r in lb.baselines if r.method == "majority"]
    subjects = list(lb.subjects)
    fig = _figure(max(6.0, 1.2 * len(subjects) + 3), 5.6)
    axes = fig.subplots(2, 1, sharex=True)
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(subjects))
    colors = [f"C{i % 10}" for i in range(len(rows))]
    for ax, key, name in ((axes[0], "f1", "F1 (pain)"), (axes[1], "accuracy", "accuracy")):
        for i, r in enumerate(rows):
            vals = np.array([r.per_subject.get(s, {}).get(key, np.nan) for s in subjects], dtype=float)  # None: undefined
            ax.bar(x - 0.4 + width * (i + 0.5), vals, width, label=_short(r.label, 28), color=colors[i],
                   hatch="//" if r.kind == "baseline" else None, edgecolor="white" if r.kind != "baseline" else "black")
        ax.set_ylim(0, 1)
        ax.set_ylabel(name)
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_xticks(x, [f"Rat#{s}" for s in subjects])
    axes[0].set_title(f"Per-rat results (top {min(len(lb.ranked), MAX_BAR_ROWS)} ranked rows and the majority baseline)", fontsize=10)
    if rows:
        axes[0].legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return _png(fig)


def confusion_matrices(lb: Leaderboard) -> bytes:
    """Pooled confusion matrix of each complete row and the majority baseline (seed means with several seeds)."""
    rows = list(lb.ranked) + [r for r in lb.baselines if r.method == "majority"]
    ncol = min(4, max(len(rows), 1))
    nrow = max(1, -(-len(rows) // ncol))
    fig = _figure(2.7 * ncol, 2.6 * nrow)
    for k, r in enumerate(rows):
        ax = fig.add_subplot(nrow, ncol, k + 1)
        c = r.confusion
        m = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]], dtype=float)
        ax.imshow(m, cmap="Blues", vmin=0)
        for i in range(2):
            for j in range(2):
                v = m[i, j]
                ax.text(j, i, f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}", ha="center", va="center", fontsize=10,
                        color="white" if v > m.max() * 0.6 else "black")
        ax.set_xticks([0, 1], ["no pain", "pain"], fontsize=7)
        ax.set_yticks([0, 1], ["no pain", "pain"], fontsize=7)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
        seeds = f" (mean of {len(r.seeds)} seeds)" if len(r.seeds) > 1 else ""
        ax.set_title(_short(r.label, 30) + seeds, fontsize=8)
    fig.tight_layout()
    return _png(fig)


def imbalance_bars(lb: Leaderboard) -> bytes:
    """Test images per held-out rat, no pain vs pain."""
    subjects = [d["subject"] for d in lb.imbalance]
    neg = [d["test_no_pain"] for d in lb.imbalance]
    pos = [d["test_pain"] for d in lb.imbalance]
    fig = _figure(max(3.6, 0.6 * len(subjects) + 1.8), 2.6)
    ax = fig.add_subplot()
    x = np.arange(len(subjects))
    ax.bar(x, neg, color="#4c78a8", label="no pain")
    ax.bar(x, pos, bottom=neg, color="#e45756", label="pain")
    ax.set_xticks(x, [f"Rat#{s}" for s in subjects], fontsize=8)
    ax.set_ylabel("test images")
    ax.legend(fontsize=7)
    ax.set_title("Class balance of each held-out rat", fontsize=9)
    fig.tight_layout()
    return _png(fig)


def au_confusion_matrices(lb: Leaderboard) -> bytes:
    """Per-AU pooled 3x3 confusion matrices (consensus grade vs predicted) of the top ranked au rows (seed means)."""
    from ..tasks import AUS, GRADES

    rows = [r for r in lb.ranked[:MAX_BAR_ROWS] if r.au] or [r for r in lb.rows if r.au][:1]
    fig = _figure(2.4 * len(AUS) + 0.4, 2.5 * max(len(rows), 1) + 0.3)
    for i, r in enumerate(rows):
        for j, a in enumerate(AUS):
            ax = fig.add_subplot(max(len(rows), 1), len(AUS), i * len(AUS) + j + 1)
            m = np.array(r.au["confusion"][a], dtype=float)
            ax.imshow(m, cmap="Blues", vmin=0)
            for t in GRADES:
                for p in GRADES:
                    v = m[t, p]
                    ax.text(p, t, f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}", ha="center", va="center", fontsize=8,
                            color="white" if v > m.max() * 0.6 else "black")
            ax.set_xticks(list(GRADES), [str(g) for g in GRADES], fontsize=7)
            ax.set_yticks(list(GRADES), [str(g) for g in GRADES], fontsize=7)
            ax.set_xlabel("predicted", fontsize=7)
            ax.set_ylabel("consensus", fontsize=7)
            ax.set_title(f"{_short(r.label, 18)}: {a}", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def bland_altman(lb: Leaderboard) -> bytes:
    """Bland–Altman plot of the RGS score of the top ranked au row: x = mean of predicted and consensus score,
    y = predicted - consensus; bias line and bias ± 1.96 SD limits of agreement."""
    row = next((r for r in lb.ranked if r.au), None) or next((r for r in lb.rows if r.au), None)
    fig = _figure(6.0, 4.0)
    ax = fig.add_subplot()
    if row is not None and len(row.au["bland_altman"]["pred"]):
        pred = np.asarray(row.au["bland_altman"]["pred"], dtype=float)
        truth = np.asarray(row.au["bland_altman"]["truth"], dtype=float)
        x, y = (pred + truth) / 2, pred - truth
        bias = float(y.mean())
        sd = float(y.std(ddof=1)) if len(y) > 1 else 0.0
        ax.scatter(x, y, s=9, alpha=0.45, color="#2f5fb3", edgecolors="none")
        ax.axhline(bias, color="black", linewidth=1.2, label=f"bias {bias:+.3f}")
        for lim in (bias - 1.96 * sd, bias + 1.96 * sd):
            ax.axhline(lim, color="#e45756", linestyle="--", linewidth=1)
        ax.plot([], [], color="#e45756", linestyle="--", label=f"bias ± 1.96 SD [{bias - 1.96 * sd:+.3f}, {bias + 1.96 * sd:+.3f}]")
        ax.legend(fontsize=7, loc="upper right")
        ax.set_title(f"Bland–Altman, RGS score: {_short(row.label, 40)} ({len(y)} images)", fontsize=9)
    ax.set_xlabel("mean of predicted and consensus RGS score", fontsize=8)
    ax.set_ylabel("predicted − consensus", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)
