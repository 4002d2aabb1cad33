"""The hosted board: the project's leaderboard (`board.table.build_leaderboard`, its tiers and bootstrap intervals over
rats, the same HTML and JSON renderers) built from each team's latest submission that set its released score
(`ladder`), with what a team must not read taken out: the pooled F1 is the released score, every other figure is
rounded to the Ladder's step (confusion counts and McNemar's test, exact functions of the predictions, are dropped);
per-rat figures, the per-rat label counts of the hidden data (the imbalance table) and times are not shown.
"""
from __future__ import annotations

import dataclasses
import json
import threading

from . import store
from .scoring import record_from

_cache: dict = {}
_lock = threading.Lock()


def _coarse(row, released: dict, eta: float):
    """A row with the released score as its pooled F1 and every other figure rounded to `eta` (full precision where
    the host chose no Ladder)."""
    from .ladder import round_to

    if row.method not in released:
        return row
    score, kind = released[row.method]
    if kind == "none":
        return row

    def r(x):
        return None if x is None else round_to(x, eta)

    pooled = {k: r(v) for k, v in row.pooled.items()} | {"f1": score}
    return dataclasses.replace(row, pooled=pooled, pooled_std={k: None for k in row.pooled_std},
                               mean_over_subjects={k: r(v) for k, v in row.mean_over_subjects.items()},
                               ci={k: (r(lo), r(hi)) for k, (lo, hi) in row.ci.items()}, confusion={}, mcnemar=None,
                               tier_p=None, tier_p_raw=None)


def _public(lb, released: dict, eta: float):
    rows = tuple(dataclasses.replace(_coarse(r, released, eta), per_subject={}, train_seconds=None, run_ids=(), run_urls=(),
                                     hardware="", experiment_id="") for r in lb.rows)
    return dataclasses.replace(lb, rows=rows, per_rat=False, imbalance=(), incomplete=(), tracking_uri="", ui_command=None,
                               ui_url="", warnings=())


def leaderboard(conn, dataset_name: str):
    """The public Leaderboard (None when nothing is scored yet), cached until a new score lands."""
    from ..board.table import build_leaderboard

    version = store.board_version(conn)
    with _lock:
        if _cache.get("version") == version:
            return _cache["lb"]
    rows = store.released_records(conn)
    records = [record_from(rec, preds) for _, rec, preds, _, _ in rows]
    released = {rec.method: (score, kind) for rec, (score, _, _, kind, _) in zip(records, rows)}
    eta = rows[0][4] if rows else 0.02
    own = {r.method: r.config_hash for r in records}  # a submission's registered configuration is that of its own TOML
    lb = _public(build_leaderboard(dataset_name, records, tracking_uri="", lookup=lambda m, _profile: own[m]), released, eta) \
        if records else None
    with _lock:
        _cache.update(version=version, lb=lb, html=None, json=None)
    return lb


def html(conn, dataset_name: str) -> str:
    from ..board.render_html import render_html
    from .pages import page

    lb = leaderboard(conn, dataset_name)
    if lb is None:
        return page("Leaderboard", "<h1>Leaderboard</h1><p>No submission has been scored yet.</p>")
    with _lock:
        if _cache.get("html") is None:
            _cache["html"] = render_html(lb, with_figures=False)
        return _cache["html"]


def as_json(conn, dataset_name: str) -> str:
    from ..board.export import results_json

    lb = leaderboard(conn, dataset_name)
    if lb is None:
        return json.dumps({"leaderboards": []})
    with _lock:
        if _cache.get("json") is None:
            _cache["json"] = json.dumps(results_json([lb]), ensure_ascii=False)
        return _cache["json"]
