"""`score PREDICTIONS.csv | --latest METHOD [--runs-dir D] [--format json|md] [--method M] [--seed N] [--compare OTHER.csv]`."""
from __future__ import annotations

import sys

from .common import command, print_json


def add_parser(subparsers) -> None:
    p = command(subparsers, "score", "score a predictions file (pooled LORO, per subject, mean over subjects)", [
        "ratspain-bench score predictions.csv", "ratspain-bench score predictions.csv --format md",
        "ratspain-bench score --latest lbp-r1p8-8x8 --format md   # the newest run of a method in ./ratspain-runs",
        "ratspain-bench score a.csv --compare b.csv          # McNemar's test on the shared images"],
        description="Scores a predictions CSV (columns image,subject,y_true,y_pred; optional score,fold,method,seed). "
                    "A file holding several (method, seed) runs scores each: JSON gives a list of the contract's "
                    "objects with `method` and `seed` added, Markdown one row per run. Use --method/--seed to pick one.")
    p.add_argument("predictions", metavar="PREDICTIONS.csv", nargs="?", help="predictions file written by `run` (or by hand)")
    p.add_argument("--latest", metavar="METHOD", help="instead of a file: the newest predictions file of METHOD in --runs-dir")
    p.add_argument("--runs-dir", default="ratspain-runs", help="with --latest: the runs folder (default ./ratspain-runs)")
    p.add_argument("--format", choices=("json", "md"), default="json", help="output format (default json)")
    p.add_argument("--method", "--methods", dest="method", default=None, help="score only the rows of this method")
    p.add_argument("--seed", default=None, help="score only the rows of this seed")
    p.add_argument("--compare", metavar="OTHER.csv", default=None,
                   help="instead of scoring, McNemar's test of this file against OTHER.csv on the images both share")
    p.set_defaults(func=run_score)


def _file(args) -> str:
    """The predictions file: the argument, or with --latest the newest of that method in the runs folder."""
    from pathlib import Path

    from ..errors import InputError
    from ..evaluation.identity import safe_name

    if args.latest:
        if args.predictions:
            raise InputError("give a predictions file or --latest METHOD, not both")
        found = sorted(Path(args.runs_dir).glob(f"predictions/*/{safe_name(args.latest)}__*.csv"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise InputError(f"--latest {args.latest}: no predictions of it in {Path(args.runs_dir) / 'predictions'} "
                             "(run it first, or give --runs-dir)")
        return str(found[-1])
    if not args.predictions:
        raise InputError("score: give a predictions file (PREDICTIONS.csv), or --latest METHOD")
    return args.predictions


def run_score(args) -> int:
    from .. import api

    if args.compare:
        from ..board.compare import format_comparison

        if args.method is not None or args.seed is not None:
            from ..errors import InputError

            raise InputError("--compare takes two files of one run each; --method/--seed do not apply")
        result = api.compare(_file(args), args.compare)
        print_json(result) if args.format == "json" else sys.stdout.write(format_comparison(result))
        return 0
    result = api.score(_file(args), args.method, args.seed, args.format)
    print_json(result) if args.format == "json" else sys.stdout.write(result)
    return 0
