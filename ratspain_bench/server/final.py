"""The final run (`server finalize`): each team's selected submission once, on the private images.

A team selects a scored submission with `submit select ID`; by default it is its best released one (the latest
that set its released score). Finalizing first closes the phase (uploads are refused from then on), then runs each
pick through `run`'s fold path on every image: fold j trains on every image of the other rats, public and private,
and its predictions for rat j's private images are the ones scored (its public images are predicted too, unscored:
the code cannot tell which is which). The final board is the project's leaderboard of those predictions, in full:
per rat, bootstrap intervals over rats, tiers, with each team's public-phase released score in the row's note.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import InputError
from . import archive, store


def _run(sub: dict, data: str, runs_dir: Path, sandbox: str, device: str) -> dict:
    """One pick through the scoring child, on every image."""
    from .queue import die_with_parent

    work = runs_dir / "server" / "final" / str(sub["id"])
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    folder = archive.unpack(sub["archive"], work / "src", archive.Limits(**sub["limits"].get("archive", {})))
    request = {"public": None, "folder": str(folder), "method": sub["name"], "team": sub["team"], "data": data,
               "runs_dir": str(runs_dir / "final"), "sandbox": sandbox, "device": device, "result": str(work / "result.json"),
               "time_limit": float(sub["limits"].get("time_limit", 1800)), "memory_mb": int(sub["limits"].get("memory_mb", 8192))}
    (work / "request.json").write_text(json.dumps(request))
    with open(work / "scoring.log", "wb") as log:
        rc = subprocess.call([sys.executable, "-m", "ratspain_bench.server.scoring", str(work / "request.json")], stdout=log,
                             stderr=subprocess.STDOUT, preexec_fn=die_with_parent())
    if rc != 0 or not (work / "result.json").is_file():
        return {"status": "error", "log": (work / "scoring.log").read_text(errors="replace")[-5000:]}
    return json.loads((work / "result.json").read_text())


def finalize(url: str, data, runs_dir: Path, sandbox: str = "auto", device: str = "cpu", progress=print) -> dict:
    """Close the public phase and run each team's pick on the private images; returns the final board's JSON."""
    from ..board.export import results_json
    from ..board.render_html import render_html
    from ..board.table import build_leaderboard
    from ..data import load_dataset
    from .scoring import record_from

    dataset = load_dataset(data)
    with store.connect(url) as conn:
        phase = store.get_meta(conn, "split")
        if not phase:
            raise InputError("no public/private split: `ratspain-bench server split` before the first submission makes one")
        if store.get_meta(conn, "finalized"):
            raise InputError(f"the phase was finalized at {store.get_meta(conn, 'finalized')}; its final board is at /final")
        store.set_meta(conn, "finalized", conn.execute("SELECT now()").fetchone()[0].isoformat())
        picks = store.final_picks(conn)
    public = set(json.loads(phase)["ids"])
    private = [i for i in dataset.table["image"].astype(str) if i not in public]
    records, notes, outcome = [], {}, {}
    for sub in picks:
        out = _run(sub, str(data), Path(runs_dir), sandbox, device)
        outcome[sub["team"]] = out["status"] if out["status"] != "failed" else f"failed: {out['reason']}"
        progress(f"{sub['team']}: submission {sub['id']} ({sub['name']}): {outcome[sub['team']]}")
        if out["status"] != "scored":
            continue
        rec = record_from(out["record"], out["predictions"])
        rec = dataclasses.replace(rec, dataset=f"{dataset.name}-private",
                                  predictions=rec.predictions[rec.predictions["image"].isin(set(private))].reset_index(drop=True))
        records.append(rec)
        notes[rec.method] = f"team {sub['team']}; public phase: released {sub['released']:g}" if sub["released"] is not None \
            else f"team {sub['team']}"
    if not records:
        board = {"leaderboards": [], "outcomes": outcome}
        html = "<!doctype html><title>Final board</title><h1>Final board</h1><p>No pick was scored.</p>"
    else:
        own = {r.method: r.config_hash for r in records}
        lb = build_leaderboard(f"{dataset.name}-private", records, tracking_uri="", lookup=lambda m, _p: own[m])
        lb = dataclasses.replace(lb, rows=tuple(dataclasses.replace(r, note=notes.get(r.method, r.note)) for r in lb.rows))
        board = {**results_json([lb]), "outcomes": outcome}
        html = render_html(lb, with_figures=False)
    with store.connect(url) as conn:
        store.set_meta(conn, "final_json", json.dumps(board))
        store.set_meta(conn, "final_html", html)
    return board
