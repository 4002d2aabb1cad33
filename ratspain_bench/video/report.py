"""Outputs of the video track: the summary and frame tables, a time course per animal, one self-contained HTML page.

Figures are drawn on a matplotlib Figure without pyplot (the caller's backend is left alone). Every file is
written under a temporary name and renamed into place.
"""
from __future__ import annotations

import base64
import html
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..paths import atomic_write_bytes, atomic_write_text
from ..plots import fixed_margins

SMOOTH_S = 180.0  # the widest centred moving window of the time courses, seconds of video (an eighth of short videos)


def smooth(t, y, window_s: float = SMOOTH_S) -> np.ndarray:
    """Centred moving mean of y over time: for each point, the mean of the points within window_s / 2 of it."""
    t, y = np.asarray(t, float), np.asarray(y, float)
    order = np.argsort(t, kind="stable")
    ts, ys = t[order], y[order]
    ok = np.isfinite(ys)
    csum = np.concatenate([[0.0], np.cumsum(np.where(ok, ys, 0.0))])
    cnt = np.concatenate([[0], np.cumsum(ok)])
    lo = np.searchsorted(ts, ts - window_s / 2, side="left")
    hi = np.searchsorted(ts, ts + window_s / 2, side="right")
    with np.errstate(invalid="ignore"):
        out = (csum[hi] - csum[lo]) / (cnt[hi] - cnt[lo])
    result = np.empty_like(out)
    result[order] = out
    return result


class TimeCourses:
    """Every animal's time course on one template: the same axes, limits (time 0 to the longest video), legend and
    smoothing window for all, drawn once; per animal only its dots, lines and title are drawn onto a copy of the
    template's pixels (matplotlib blitting), several times faster than a figure per animal.

    Per panel (P(pain); RGS too for an action-unit model): one line per session, the moving mean over `window_s`
    (default an eighth of the time covered, at most `SMOOTH_S`), the frames themselves as faint dots."""

    def __init__(self, frames: pd.DataFrame, window_s: float | None = None):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D

        span = float(frames["time_s"].max() - frames["time_s"].min())
        self.window_s = window_s if window_s is not None else (min(SMOOTH_S, span / 8) or 1.0)
        self.panels = [("pain_probability", "P(pain)")] + ([("rgs", "RGS (mean AU grade)")] if "rgs" in frames.columns else [])
        self.sessions = list(dict.fromkeys(frames["session"])) if "session" in frames.columns else [""]
        self.fig = Figure(figsize=(6.4, 2.4 * len(self.panels)), dpi=100)
        self.canvas = FigureCanvasAgg(self.fig)
        self.axes = self.fig.subplots(len(self.panels), 1, sharex=True, squeeze=False)[:, 0]
        x_max = max(float(frames["time_s"].max()) / 60, 1e-3)
        for ax, (col, label) in zip(self.axes, self.panels):
            ax.set_xlim(-0.02 * x_max, 1.02 * x_max)
            ax.set_ylabel(label)
            ax.set_ylim(-0.05, 1.05 if col == "pain_probability" else 2.05)
            ax.grid(alpha=0.3)
        handles = [Line2D([], [], color=f"C{i}", lw=2, label=s or "all") for i, s in enumerate(self.sessions)]
        self.axes[0].legend(handles=handles, fontsize=8, title="session", title_fontsize=8, loc="upper right")
        self.axes[-1].set_xlabel("time in the video (min)")
        self.axes[0].set_title(" ", fontsize=9)  # each animal's title is drawn here
        fixed_margins(self.fig, left=0.7, right=0.12, top=0.3, bottom=0.5, hspace=0.15)
        self.canvas.draw()
        self.background = self.canvas.copy_from_bbox(self.fig.bbox)
        self.title = self.axes[0].title

    def png(self, frames: pd.DataFrame, subject: str) -> bytes:
        """The PNG of one animal's scored frames."""
        from PIL import Image

        self.canvas.restore_region(self.background)
        width = f"{self.window_s:.0f} s" if self.window_s < 120 else f"{self.window_s / 60:.1f} min"
        self.title.set_text(f"{subject}: scored frames, moving mean over {width}")
        self.axes[0].draw_artist(self.title)
        for ax, (col, _) in zip(self.axes, self.panels):
            for i, session in enumerate(self.sessions):
                sub = frames[frames["session"] == session] if "session" in frames.columns else frames
                sub = sub.sort_values("time_s")
                minutes = sub["time_s"].to_numpy(float) / 60
                drawn = ax.plot(minutes, sub[col], ".", color=f"C{i}", alpha=0.3, ms=4)
                drawn += ax.plot(minutes, smooth(sub["time_s"], sub[col], self.window_s), "-", color=f"C{i}", lw=2)
                for line in drawn:
                    ax.draw_artist(line)
                    line.remove()
        buf = io.BytesIO()
        Image.fromarray(np.asarray(self.canvas.buffer_rgba())[..., :3]).save(buf, format="PNG", compress_level=3)
        return buf.getvalue()


def write_outputs(summary: pd.DataFrame, frames: pd.DataFrame, out_dir, comparison=None, title: str = "Pain from video",
                  window_s: float | None = None) -> dict[str, Path]:
    """Write `summary.csv`, `frames.csv` (the joined frame scores), `timecourse/<subject>.png`, with a `comparison`
    (groups.Comparison) `groups.png` and `groups.json`, and `report.html` (everything inlined: no other file
    needed). Returns {name: path}: `summary`, `frames`, `report`, `groups`, `groups_json`, `timecourse/<subject>`."""
    out_dir = Path(out_dir)
    (out_dir / "timecourse").mkdir(parents=True, exist_ok=True)
    paths = {"summary": out_dir / "summary.csv", "frames": out_dir / "frames.csv"}
    atomic_write_text(paths["summary"], summary.to_csv(index=False, lineterminator="\n"))
    atomic_write_text(paths["frames"], frames.to_csv(index=False, lineterminator="\n"))
    scored = frames[frames["error"].eq("") & frames["pain_probability"].notna()]
    figures = []
    courses = TimeCourses(scored, window_s) if len(scored) else None
    for subject, sub in scored.groupby("subject", sort=True):
        png = courses.png(sub, str(subject))
        paths[f"timecourse/{subject}"] = atomic_write_bytes(out_dir / "timecourse" / f"{_safe(str(subject))}.png", png)
        figures.append((str(subject), png))
    groups_png = None
    if comparison is not None:
        paths["groups"] = comparison.plot(out_dir / "groups.png")
        groups_png = paths["groups"].read_bytes()
        paths["groups_json"] = out_dir / "groups.json"
        atomic_write_text(paths["groups_json"], json.dumps(comparison.as_dict(), indent=1) + "\n")
    paths["report"] = out_dir / "report.html"
    atomic_write_text(paths["report"], report_html(summary, figures, comparison, groups_png, title, frames))
    return paths


def write_report(scores, manifest, by, out_dir, on_warning=None, high: float | None = None,
                 overlay: bool = False) -> tuple[dict[str, Path], int]:
    """What `predict --by` writes beside its scores: `scores` (a DataFrame or CSV of a model's predict) joined to
    the frames `manifest`, summarised per group of `by` (`summary.summarise`, with the manifest's `quality.csv` and
    the `high` threshold), compared by `groups.compare` when `by` holds `subject` and the manifest's `group` column
    names two groups, and written by `write_outputs` into `out_dir`; with `overlay`, an annotated copy of each video
    in `out_dir/overlay/` (`overlay.write_overlays`; needs `quality.csv`). Returns (the files written, the number of
    groups); a comparison that cannot be made is one line to `on_warning` and the rest is written."""
    from ..errors import InputError
    from .groups import compare
    from .summary import join, read_quality, summarise

    quality = read_quality(manifest, required=overlay)
    frames = join(scores, manifest)
    summary = summarise(frames, None, by, high=high, quality=quality)
    comparison = None
    if "group" in summary.columns and "subject" in by and summary["group"].nunique() == 2:
        try:
            comparison = compare(summary, value="mean_rgs" if "mean_rgs" in summary.columns else "mean_pain_prob")
        except InputError as e:
            if on_warning is not None:
                on_warning(f"no group comparison in the report: {e}")
    paths = write_outputs(summary, frames, Path(out_dir), comparison)
    if overlay:
        from .overlay import write_overlays

        paths.update({f"overlay/{p.stem}": p for p in write_overlays(frames, quality, Path(out_dir) / "overlay")})
    return paths, len(summary)


def report_html(summary: pd.DataFrame, figures: list[tuple[str, bytes]], comparison=None, groups_png: bytes | None = None,
                title: str = "Pain from video", frames: pd.DataFrame | None = None) -> str:
    """The HTML page: the summary table, the group comparison (text and figure) and the time courses, images as
    base64 data URIs."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if frames is not None and "warning" in frames.columns and frames["warning"].astype(str).str.len().gt(0).any():
        parts.append(f'<p class="warn">{html.escape(str(frames["warning"].iloc[0]))}</p>')
    if frames is not None:
        n_bad = int((frames["error"] != "").sum())
        parts.append(f"<p>{len(frames) - n_bad} frames scored" + (f", {n_bad} could not be read" if n_bad else "") + ".</p>")
    if comparison is not None:
        parts.append("<h2>Groups (the animal is the unit)</h2>")
        if groups_png:
            parts.append(_img(groups_png, "groups"))
        parts.append(f"<pre>{html.escape(comparison.text())}</pre>")
    parts.append("<h2>Per animal and session</h2>")
    parts.append(summary.to_html(index=False, float_format=lambda v: f"{v:.4f}", border=0, classes="summary"))
    if figures:
        parts.append("<h2>Time courses</h2>")
        parts += [f"<h3>{html.escape(name)}</h3>{_img(png, name)}" for name, png in figures]
    style = ("body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}"
             "pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:12px}.warn{color:#a40}img{max-width:100%}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{style}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "_"
