"""`ratspain-bench submit validate PATH`: check a submission (method folder or predictions), optionally record it."""
from __future__ import annotations

import sys

from .common import add_runs_dir_option, command, print_json, sandbox_kind


def add_parser(sub) -> None:
    p = command(sub, "submit", "outside submissions: validate a method folder or a predictions file", [
        "ratspain-bench submit validate submissions/my-method"])
    ss = p.add_subparsers(dest="submit_command", required=True, metavar="ACTION")
    v = command(ss, "validate", "check a submission; one line per check (PASS/FAIL and what to fix); exit 0 valid, 2 not", [
        "ratspain-bench submit validate submissions/my-method",
        "ratspain-bench submit validate my-predictions/ --data ~/ratspain                     # format checks, no scores",
        "ratspain-bench submit validate my-predictions/ --data ~/ratspain --record --replace  # a maintainer records it"],
        description="PATH is a method folder (submission.toml + code), a predictions folder (submission.toml with "
                    "kind = \"predictions\" + predictions.csv) or a predictions .csv file. Method code runs through the fold "
                    "path of `run`, one sandboxed worker per fold, on a tiny replica; predictions are checked against --data "
                    "(format, every image exactly once; never a score); --record adds a predictions folder to MLflow as an "
                    "entry the leaderboard lists under \"predictions only, not reproduced\".")
    v.add_argument("path", metavar="PATH", help="submission folder or predictions .csv")
    v.add_argument("--data", "--dataset", dest="data", default=None,
                   help="predictions: the dataset they are for (default: the built-in replica)")
    v.add_argument("--name", default=None, help="predictions: the name to list it under (default: submission.toml name, the method column, or the file name)")
    v.add_argument("--record", action="store_true", help="predictions: when valid, record in MLflow for the leaderboard")
    v.add_argument("--replace", action="store_true", help="predictions: --record over an entry of the same name")
    v.add_argument("--time-limit", type=float, default=600, metavar="S", help="seconds per fold of the code checks (default 600)")
    v.add_argument("--import-timeout", type=float, default=120, metavar="S", help="seconds for importing the module (default 120)")
    v.add_argument("--memory-limit", type=int, default=4096, metavar="MIB", help="memory per fold in MiB, shared mappings included, "
                                                                                   "where a cgroup can be made (default 4096; 0: none)")
    v.add_argument("--sandbox", choices=("auto", "runsc", "bwrap", "none"), default="auto",
                   help="where the code checks run: runsc (gVisor), bwrap (bubblewrap), none (one process per fold, not isolated); "
                        "auto (default): runsc where it works, else bwrap")
    v.add_argument("--no-sandbox", action="store_true", help="the same as --sandbox none")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--format", choices=("text", "json"), default="text")
    add_runs_dir_option(v)
    v.set_defaults(func=run_validate)
    u = command(ss, "upload", "send a method folder to a hosted leaderboard; exit 0 scored, 1 failed, 2 refused", [
        "ratspain-bench submit upload submissions/my-method --server https://bench.example.org --wait",
        "RATSPAIN_TOKEN=rbt_... ratspain-bench submit upload my-method --server http://127.0.0.1:8000 --wait --json"],
        description="Packs the folder's reviewable files (plain files inside it, no compiled Python) as a .tar.gz and uploads "
                    "it. The server checks it as `submit validate` does before running code, queues it and runs it on data "
                    "you do not have. A team sees its status, a fixed reason for a failure and its pooled score; never the "
                    "code's output.")
    u.add_argument("path", metavar="DIR", help="the submission folder (submission.toml + code)")
    u.add_argument("--server", required=True, metavar="URL", help="the leaderboard's address")
    u.add_argument("--token", default=None, help="the team's token (default $RATSPAIN_TOKEN)")
    u.add_argument("--wait", action="store_true", help="follow it until it is scored or failed")
    u.add_argument("--json", action="store_true", help="print the final status as one JSON object (id, status, ...)")
    u.set_defaults(func=run_upload)
    s = command(ss, "select", "pick one of your scored submissions for the final run (default: your best released one)", [
        "ratspain-bench submit select 12 --server https://bench.example.org"])
    s.add_argument("id", type=int, metavar="ID")
    s.add_argument("--server", required=True, metavar="URL")
    s.add_argument("--token", default=None, help="the team's token (default $RATSPAIN_TOKEN)")
    s.set_defaults(func=run_select)


def run_validate(args) -> int:
    from .. import api

    report = api.validate(args.path, data=args.data, name=args.name, record=args.record, replace=args.replace, runs_dir=args.runs_dir,
                          tracking_uri=args.tracking_uri, time_limit=args.time_limit, import_timeout=args.import_timeout,
                          memory_mb=args.memory_limit, seed=args.seed, sandbox=sandbox_kind(args))
    if args.format == "json":
        print_json(report.as_dict())
    else:
        sys.stdout.write(report.text())
    return 0 if report.ok else 2


def run_upload(args) -> int:
    import json
    import os

    from ..server import client

    token = args.token or os.environ.get("RATSPAIN_TOKEN")
    try:
        reply = client.upload(args.path, args.server, token)
    except client.Refused as e:
        if args.json:
            print(json.dumps({"id": None, "status": "refused", "reason": str(e)}))
            return 2
        raise
    show = None if args.json else (lambda v: print(f"submission {v['id']}: {v['status']}"
                                                   + (f" (place {v['queue_position']} in the queue)" if v.get("queue_position") else "")
                                                   + (f": {v['reason']}" if v.get("reason") else "")
                                                   + (f": pooled F1 {v['f1']:.3f}, accuracy {100 * v['accuracy']:.1f}%"
                                                      if v["status"] == "scored" and v.get("f1") is not None else ""), flush=True))
    if not args.json:
        q = reply["quota"]
        print(f"uploaded as submission {reply['id']}; {q['today_left']} left today (resets {q['resets_at']}), {q['total_left']} in all")
    view = client.wait(args.server, token, reply["id"], show=show) if args.wait else client.status(args.server, token, reply["id"])
    if args.json:
        print(json.dumps(view))
    return {"scored": 0, "failed": 1}.get(view["status"], 0)


def run_select(args) -> int:
    import os

    from ..server import client

    reply = client.select(args.server, args.token or os.environ.get("RATSPAIN_TOKEN"), args.id)
    print(f"team {reply['team']}: submission {reply['selected']} is its pick for the final run")
    return 0
