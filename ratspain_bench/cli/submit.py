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
