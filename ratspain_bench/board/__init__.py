"""Leaderboards from the MLflow store: Table 3 as Markdown, a self-contained web page, CSV and JSON.

Pipeline: `collect.fetch_runs` (MLflow -> records) -> `table.build_leaderboards` (pure: ranking,
seeds, bootstrap over rats, McNemar, baselines) -> `export`, `render_md`, `render_html` -> files.

Layout of the output folder (the CLI's default: `RUNS_DIR/leaderboard/`; the committed `leaderboard/`
is written only when named with `--out leaderboard`, as `make demo` does):
- one dataset: `DIR/README.md`, `DIR/index.html`, `DIR/results.csv`, `DIR/results.json`;
- several datasets: the same four files per dataset in `DIR/<dataset>/`, plus `DIR/README.md` and
  `DIR/index.html` linking them and `DIR/results.csv`/`DIR/results.json` holding every dataset's rows
  with a `dataset` column (ranks are within a dataset; leaderboards are never mixed);
- the au task's board of a dataset is a leaderboard of its own, `DIR/<dataset>-au/` (`Leaderboard.name`);
  the combined `results.csv` then has a `task` column (binary | au);
- where a dataset has runs of another protocol than loro, its robustness board (`robustness`) sits beside its
  board: `robustness.md` and `robustness.html` in the same folder, linked from it.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from ..paths import atomic_write_text
from . import robustness
from .collect import fetch_runs, resolve_tracking_uri, shown_uri
from .table import Leaderboard, build_leaderboard, build_leaderboards

__all__ = ["Leaderboard", "build_leaderboard", "build_leaderboards", "fetch_runs", "resolve_tracking_uri",
           "write_leaderboard", "write_leaderboards", "leaderboard_from_store"]

FILES = ("README.md", "index.html", "results.csv", "results.json")


def dataset_dir_name(dataset: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", dataset).strip("._") or "dataset"


def write_leaderboard(lb: Leaderboard, out: Path, with_figures: bool = True) -> list[Path]:
    from .export import results_csv, results_json
    from .render_html import render_html
    from .render_md import render_markdown

    out = Path(out)
    texts = {"README.md": render_markdown(lb), "index.html": render_html(lb, with_figures),
             "results.csv": results_csv([lb]), "results.json": json.dumps(results_json([lb]), indent=1, ensure_ascii=False) + "\n"}
    for name, text in texts.items():
        atomic_write_text(out / name, text)
    return [out / n for n in FILES]


def write_leaderboards(leaderboards: list[Leaderboard], out, with_figures: bool = True) -> list[Path]:
    """Write one leaderboard at `out`, or several in `out/<dataset>/` with an index (see the module doc)."""
    from .export import results_csv, results_json
    from .render_html import render_index_html
    from .render_md import render_index_markdown

    out = Path(out)
    if len(leaderboards) == 1:
        return write_leaderboard(leaderboards[0], out, with_figures)
    entries, written = [], []
    for lb in leaderboards:
        rel = dataset_dir_name(lb.name)
        written += write_leaderboard(lb, out / rel, with_figures)
        entries.append((lb, rel))
    atomic_write_text(out / "README.md", render_index_markdown(entries))
    atomic_write_text(out / "index.html", render_index_html(entries))
    atomic_write_text(out / "results.csv", results_csv(leaderboards))
    atomic_write_text(out / "results.json", json.dumps(results_json(leaderboards), indent=1, ensure_ascii=False) + "\n")
    return [out / n for n in FILES] + written


def leaderboard_from_store(out=None, runs_dir="ratspain-runs", tracking_uri: str | None = None, n_resamples: int = 2000,
                           bootstrap_seed: int = 0, mlflow_ui: str | None = None) -> tuple[list[Leaderboard], list[Path]]:
    """Read every ratspain run of the store and build the leaderboards; write them to `out` when given.
    Returns the leaderboards and the files written."""
    from ..errors import InputError

    uri = resolve_tracking_uri(runs_dir, tracking_uri)
    records = fetch_runs(uri)
    if not records:
        raise InputError(f"{uri}: no ratspain runs in this MLflow store (run `ratspain-bench run` first)")
    boards = build_leaderboards(records, shown_uri(uri, tracking_uri or runs_dir), n_resamples, bootstrap_seed, mlflow_ui)
    extra = {(b.dataset, b.fingerprint): b for b in robustness.build(records, n_resamples, bootstrap_seed)}
    boards = [dataclasses.replace(lb, robustness=True) if lb.task == "binary" and (lb.dataset, lb.fingerprint) in extra else lb
              for lb in boards]
    if out is None:
        return boards, []
    written = write_leaderboards(boards, out)
    for lb in boards:
        if lb.robustness:  # beside its board: the board's own folder
            folder = Path(out) if len(boards) == 1 else Path(out) / dataset_dir_name(lb.name)
            b = extra[lb.dataset, lb.fingerprint]
            for name, text in (("robustness.md", robustness.render_markdown(b)), ("robustness.html", robustness.render_html(b))):
                atomic_write_text(folder / name, text)
                written.append(folder / name)
    return boards, written
