"""`leaderboard [--out DIR] [--runs-dir DIR] [--tracking-uri URI]`: Table 3, a web page, CSV and JSON from MLflow."""
from __future__ import annotations

from .common import add_runs_dir_option


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "leaderboard", help="write the leaderboard (README.md, index.html, results.csv, results.json) from MLflow",
        description="Reads every ratspain run from the MLflow store and writes one leaderboard per dataset: "
                    "ranked by pooled F1 (one confusion matrix over all folds), per-rat cells, mean over rats, "
                    "95% bootstrap intervals over rats, McNemar against the top row, majority and chance baselines; "
                    "incomplete runs are listed and never ranked. With several datasets, DIR/<dataset>/ each and an index.")
    p.add_argument("--out", default="leaderboard", help="output folder (default ./leaderboard)")
    add_runs_dir_option(p)
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples over rats (default 2000)")
    p.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.set_defaults(func=run_leaderboard)


def run_leaderboard(args) -> int:
    from pathlib import Path

    from ..errors import InputError
    from ..leaderboard import leaderboard_from_store

    if args.resamples < 1:
        raise InputError(f"--resamples {args.resamples}: must be at least 1")
    boards, written = leaderboard_from_store(args.out, args.runs_dir, args.tracking_uri, args.resamples, args.bootstrap_seed)
    out = Path(args.out).resolve()
    for lb in boards:
        n_ranked, n_inc = len(lb.ranked), len(lb.incomplete)
        top = f"; top: {lb.ranked[0].label} (pooled F1 {lb.ranked[0].pooled['f1']:.4f})" if lb.ranked else ""
        print(f"{lb.dataset}: {n_ranked} ranked, {n_inc} incomplete{top}")
    print(f"leaderboard written to {out}/ (README.md, index.html, results.csv, results.json)")
    print(f"open {(out / 'index.html').as_uri()}")
    return 0
