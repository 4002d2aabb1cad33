"""`ratspain-bench submit validate PATH`: check a submission (method folder or predictions), optionally record it."""
from __future__ import annotations

import sys

from .common import add_runs_dir_option, print_json


def add_parser(sub) -> None:
    p = sub.add_parser("submit", help="outside submissions: validate a method folder or a predictions file")
    ss = p.add_subparsers(dest="submit_command", required=True, metavar="ACTION")
    v = ss.add_parser(
        "validate", help="check a submission; one line per check (PASS/FAIL and what to fix); exit 0 valid, 2 not",
        description="PATH is a method folder (submission.toml + code), a predictions folder (submission.toml with "
                    "kind = \"predictions\" + predictions.csv) or a predictions .csv file. Method code runs in child "
                    "processes with time and memory limits on a tiny replica; predictions are checked against --data "
                    "(every image exactly once) and scored by the harness; --record adds them to MLflow as a "
                    "predictions-only run that the leaderboard lists.")
    v.add_argument("path", metavar="PATH", help="submission folder or predictions .csv")
    v.add_argument("--data", "--dataset", dest="data", default=None,
                   help="predictions: the dataset they are for (default: the built-in replica)")
    v.add_argument("--name", default=None, help="predictions: the name to list it under (default: submission.toml name, the method column, or the file name)")
    v.add_argument("--record", action="store_true", help="predictions: when valid, record in MLflow for the leaderboard")
    v.add_argument("--time-limit", type=float, default=600, metavar="S", help="seconds for the interface and LORO smoke run (default 600)")
    v.add_argument("--import-timeout", type=float, default=120, metavar="S", help="seconds for importing the module (default 120)")
    v.add_argument("--memory-limit", type=int, default=4096, metavar="MIB", help="memory (heap) limit of the child process in MiB (default 4096; 0: none)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--format", choices=("text", "json"), default="text")
    add_runs_dir_option(v)
    v.set_defaults(func=run_validate)


def run_validate(args) -> int:
    from ..submit import validate

    report = validate(args.path, data=args.data, name=args.name, record=args.record, runs_dir=args.runs_dir,
                      tracking_uri=args.tracking_uri, time_limit=args.time_limit, import_timeout=args.import_timeout,
                      memory_mb=args.memory_limit, seed=args.seed)
    if args.format == "json":
        print_json(report.as_dict())
    else:
        sys.stdout.write(report.text())
    return 0 if report.ok else 2
