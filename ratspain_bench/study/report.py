"""Study outputs: the sensitivity CSV and figure (like the paper's Figure 5), the tuning report, importance.

Every file is written to a temporary sibling and renamed, so a reader (or a second worker writing
the same report) never sees half a file.
"""
from __future__ import annotations

import math
import os
import textwrap
from pathlib import Path

import pandas as pd

from ..paths import atomic_write_text

SENSITIVITY_COLUMNS = ["param", "value", "pooled_f1", "pooled_accuracy"]
ANALYSIS_NOTE = ("scored on the test rats of each LORO fold: an analysis of sensitivity, not a tuning result "
                 "(use `study tune` for hyper-parameters chosen without the test rat)")
STYLES = [("tab:red", "*"), ("tab:green", "o"), ("tab:blue", "^"), ("tab:purple", "s"), ("tab:orange", "D"), ("tab:brown", "v")]


def atomic_csv(frame: pd.DataFrame, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path


def _fmt(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


# ---------------------------------------------------------------- sensitivity


def sensitivity_figure(rows: pd.DataFrame, path: Path, title: str, defaults: dict | None = None, symbols: dict | None = None) -> Path:
    """One panel per parameter (F1 against the parameter's grid values, evenly spaced), as Figure 5, saved as PNG;
    `symbols`: axis labels the method declares (`PLOT_SYMBOLS`, e.g. lambda -> λ)."""
    fig = draw_sensitivity(rows, title, defaults, symbols)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fig.savefig(tmp, dpi=110, format="png")
    os.replace(tmp, path)
    return path


def draw_sensitivity(rows: pd.DataFrame, title: str, defaults: dict | None = None, symbols: dict | None = None):
    """The figure of `sensitivity_figure` (a matplotlib Figure, drawn without pyplot)."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's inline one) is left alone

    params = list(dict.fromkeys(rows["param"]))
    n = max(1, len(params))
    width = max(3.6 * n, 5.0)
    fig = Figure(figsize=(width, 3.4))
    axes = fig.subplots(1, n, squeeze=False)
    finite = pd.to_numeric(rows["pooled_f1"], errors="coerce").dropna()
    lo = min(0.5, float(finite.min()) - 0.05) if len(finite) else 0.0
    for i, (ax, p) in enumerate(zip(axes[0], params)):
        sub = rows[rows["param"] == p]
        color, marker = STYLES[i % len(STYLES)]
        xs = list(range(len(sub)))
        ys = pd.to_numeric(sub["pooled_f1"], errors="coerce").tolist()
        ax.plot(xs, ys, color=color, marker=marker, markersize=9 if marker == "*" else 6, linewidth=1.5)
        for x, y in zip(xs, ys):
            if not math.isnan(y):
                ax.annotate(f"{y:.3f}", (x, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=7)
        ax.set_xticks(xs, [str(v) for v in sub["value"]])
        if defaults and p in defaults:
            at = [j for j, v in enumerate(sub["value"]) if _same(v, defaults[p])]
            for j in at:
                ax.axvline(j, color="grey", linestyle=":", linewidth=1)
        sym = (symbols or {}).get(p, p)
        ax.set_xlabel(sym)
        ax.set_ylabel("pooled F1 (LORO)")
        ax.set_ylim(max(0.0, lo), 1.06)
        ax.grid(alpha=0.3)
        ax.set_title(f"({chr(ord('a') + i)}) {sym}", fontsize=10)
    chars = int(width * 72 / (9 * 0.55))  # characters of 9 pt text across the figure: a long title wraps, never cut
    wrap = lambda text: textwrap.wrap(text, chars, break_on_hyphens=False)  # noqa: E731 - names keep their hyphens
    lines = wrap(title) + (wrap("(dotted line: the value the other panels hold fixed)") if defaults else [])
    fig.suptitle("\n".join(lines), fontsize=9)
    fig.tight_layout()
    return fig


def _same(a, b) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return str(a) == str(b)


def sensitivity_markdown(rows: pd.DataFrame, meta: dict) -> str:
    lines = [f"# Sensitivity analysis: {meta['method']} on {meta['dataset']}", "",
             f"**This is an analysis, not a tuning result**: every point is {ANALYSIS_NOTE}.", "",
             f"One parameter varied at a time, the others at their defaults ({', '.join(f'{k}={v}' for k, v in meta['defaults'].items())}); "
             f"each point is a full leave-one-rat-out run scored by pooled F1 (one confusion matrix over all folds).", "",
             f"- profile: `{meta['profile']}`; fixed settings: {', '.join(f'`{k}={v}`' for k, v in meta['fixed'].items()) or 'none'}",
             f"- Optuna study `{meta['study']}` in `{meta['storage']}` (GridSampler over the points)",
             f"- seed {meta['seed']}; wall time of this worker {meta['seconds']:.1f} s", "",
             "| parameter | value | pooled F1 | pooled accuracy |", "|---|---|---|---|"]
    for r in rows.itertuples(index=False):
        acc = r.pooled_accuracy
        lines.append(f"| {r.param} | {r.value} | {_fmt(r.pooled_f1)} | {_fmt(100 * acc, 2) + '%' if isinstance(acc, float) and not math.isnan(acc) else '—'} |")
    lines += ["", "| parameter | min F1 | max F1 | range |", "|---|---|---|---|"]
    for p, g in rows.groupby("param", sort=False):
        f = pd.to_numeric(g["pooled_f1"], errors="coerce").dropna()
        if len(f):
            lines.append(f"| {p} | {f.min():.4f} | {f.max():.4f} | {f.max() - f.min():.4f} |")
    if meta.get("failed"):
        lines += ["", "Failed points:"] + [f"- {p}: {e}" for p, e in meta["failed"].items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- tuning


def importances(study) -> dict[str, float]:
    """Optuna's parameter importances of a study ({} when fewer than two complete trials differ)."""
    import optuna
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if len(done) < 2 or not any(len({str(t.params.get(k)) for t in done}) > 1 for k in done[0].params):
        return {}
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dict(optuna.importance.get_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)))
    except (RuntimeError, ValueError):  # e.g. a parameter never varied
        return {}


def tune_markdown(result: dict) -> str:
    nested = result["nested"]
    lines = [f"# Nested-LORO tuning: {result['method']} on {result['dataset']}", "",
             "For each outer fold (held-out rat), an inner leave-one-rat-out over the training rats only chooses the "
             "hyper-parameters (Optuna TPE, median pruning across inner folds); the held-out rat then scores the chosen "
             "config. The test rat is never used to choose anything, so the pooled score below is an honest estimate.", "",
             f"- search space ({result['space_source']}): " + "; ".join(result["space"]),
             f"- Optuna studies `{result['study']}/outer-<rat>` in `{result['storage']}`; profile `{result['profile']}`; seed {result['seed']}",
             "", f"**Nested LORO, pooled over outer folds: F1 {_fmt(nested.get('f1'))}, accuracy "
             f"{_fmt(100 * nested['accuracy'], 2) + '%' if nested.get('accuracy') is not None else '—'}** "
             f"({nested.get('folds_scored', 0)}/{len(result['outer'])} outer folds scored)", "",
             "| outer rat | trials (complete/pruned/failed) | inner pooled F1 (best) | chosen | outer F1 | outer accuracy |",
             "|---|---|---|---|---|---|"]
    for o in result["outer"]:
        chosen = ", ".join(f"{k}={_fmt(v, 4) if isinstance(v, float) else v}" for k, v in (o.get("params") or {}).items()) or "—"
        acc = o.get("accuracy")
        lines.append(f"| {o['subject']} | {o['complete']}/{o['pruned']}/{o['failed']} | {_fmt(o.get('inner_f1'))} | {chosen} | "
                     f"{_fmt(o.get('f1'))} | {_fmt(100 * acc, 2) + '%' if acc is not None else '—'} |")
    imp = result.get("importance") or {}
    lines += ["", "## Parameter importance", ""]
    if imp:
        lines += ["fANOVA importance (Optuna, FanovaImportanceEvaluator) of each parameter for the inner score, averaged over outer folds:", "",
                  "| parameter | importance |", "|---|---|"] + [f"| {k} | {v:.3f} |" for k, v in imp.items()]
    else:
        lines.append("Not available: fewer than two complete trials per outer fold, or every trial scored the same.")
    return "\n".join(lines) + "\n"


def write_text(path: Path, text: str) -> Path:
    atomic_write_text(Path(path), text)
    return Path(path)
