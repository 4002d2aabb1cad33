"""`score PREDICTIONS.csv [--format json|md] [--method M] [--seed N]`."""
from __future__ import annotations

import sys

from .common import print_json


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "score", help="score a predictions file (pooled LORO, per subject, mean over subjects)",
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


def load_selected(path, method=None, seed=None):
    """Read and validate one predictions file, narrowed to --method/--seed when given."""
    from ..scoring import read_predictions, select

    preds = read_predictions(path)
    if method is not None or seed is not None:
        preds = select(preds, method, seed)
    return preds


def run_score(args) -> int:
    from pathlib import Path

    from ..scoring import score_runs, to_json, to_markdown

    preds = load_selected(args.predictions, args.method, args.seed)
    if args.compare:
        from ..leaderboard.compare import run_compare

        return run_compare(preds, args.compare, args.format)
    scored = score_runs(preds)
    if args.format == "json":
        print_json(to_json(scored))
    else:
        sys.stdout.write(to_markdown(scored, default_name=Path(args.predictions).stem))
    return 0
