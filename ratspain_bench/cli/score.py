"""`score PREDICTIONS.csv [--format json|md] [--method M] [--seed N] [--compare OTHER.csv]`."""
from __future__ import annotations

import sys

from .common import command, print_json


def add_parser(subparsers) -> None:
    p = command(subparsers, "score", "score a predictions file (pooled LORO, per subject, mean over subjects)", [
        "ratspain-bench score predictions.csv", "ratspain-bench score predictions.csv --format md",
        "ratspain-bench score a.csv --compare b.csv          # McNemar's test on the shared images"],
        description="Scores a predictions CSV (columns image,subject,y_true,y_pred; optional score,fold,method,seed). "
                    "A file holding several (method, seed) runs scores each: JSON gives a list of the contract's "
                    "objects with `method` and `seed` added, Markdown one row per run. Use --method/--seed to pick one.")
    p.add_argument("predictions", metavar="PREDICTIONS.csv", help="predictions file written by `run` (or by hand)")
    p.add_argument("--format", choices=("json", "md"), default="json", help="output format (default json)")
    p.add_argument("--method", default=None, help="score only the rows of this method")
    p.add_argument("--seed", default=None, help="score only the rows of this seed")
    p.add_argument("--compare", metavar="OTHER.csv", default=None,
                   help="instead of scoring, McNemar's test of this file against OTHER.csv on the images both share")
    p.set_defaults(func=run_score)


def run_score(args) -> int:
    from .. import api

    if args.compare:
        from ..board.compare import format_comparison

        if args.method is not None or args.seed is not None:
            from ..errors import InputError

            raise InputError("--compare takes two files of one run each; --method/--seed do not apply")
        result = api.compare(args.predictions, args.compare)
        print_json(result) if args.format == "json" else sys.stdout.write(format_comparison(result))
        return 0
    result = api.score(args.predictions, args.method, args.seed, args.format)
    print_json(result) if args.format == "json" else sys.stdout.write(result)
    return 0
