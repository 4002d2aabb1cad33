"""`leaderboard [--out DIR] [--runs-dir DIR] [--tracking-uri URI]`: Table 3, a web page, CSV and JSON from MLflow."""
from __future__ import annotations

from .common import add_runs_dir_option, command


def add_parser(subparsers) -> None:
    p = command(subparsers, "leaderboard", "write the leaderboard (README.md, index.html, results.csv, results.json) from MLflow", [
        "ratspain-bench leaderboard                          # writes ratspain-runs/leaderboard/",
        "ratspain-bench leaderboard --out leaderboard        # the committed leaderboard (what `make demo` does)",
        "ratspain-bench leaderboard --tracking-uri http://mlflow.lab:5000 --mlflow-ui http://mlflow.lab:5000"],
        description="Reads every ratspain run from the MLflow store and writes one leaderboard per dataset: "
                    "ranked by pooled F1 (one confusion matrix over all folds), per-rat cells, mean over rats, "
                    "95% bootstrap intervals over rats, McNemar against the top row, majority and chance baselines; "
                    "incomplete runs are listed and never ranked. With several datasets, DIR/<dataset>/ each and an index.")
    p.add_argument("--out", default=None, help="output folder (default RUNS_DIR/leaderboard)")
    add_runs_dir_option(p)
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples over rats (default 2000)")
    p.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--mlflow-ui", default=None, metavar="URL", help="where the page's run links point (default: the tracking server, "
                                                                    "else http://127.0.0.1:5000, where `mlflow ui` serves)")
    p.set_defaults(func=run_leaderboard)


def run_leaderboard(args) -> int:
    from pathlib import Path

    from .. import api

    out = Path(args.out) if args.out else Path(args.runs_dir) / "leaderboard"
    boards = api.leaderboard(out, args.runs_dir, args.tracking_uri, args.resamples, args.bootstrap_seed, args.mlflow_ui)
    for lb in boards:
        top = ""
        if lb.ranked and lb.task == "au":
            icc = lb.ranked[0].au["rgs"]["icc_a1"]
            top = f"; top: {lb.ranked[0].label} (RGS ICC(A,1) {'undefined' if icc is None else f'{icc:.4f}'})"
        elif lb.ranked:
            top = f"; top: {lb.ranked[0].label} (pooled F1 {lb.ranked[0].pooled['f1']:.4f})"
        above = lb.above_top()
        if above:  # a higher score that is not ranked is said, never hidden behind the top
            top += ("; not ranked, above it: " + ", ".join(f"{r.label} (pooled F1 {r.pooled['f1']:.4f})" for r in above)
                    + f" ({above[0].note.split(':')[0]})")
        unranked = f", {len(lb.unranked)} not ranked" if lb.unranked else ""
        print(f"{lb.name}: {len(lb.ranked)} ranked{unranked}, {len(lb.incomplete)} incomplete{top}")
    out = out.resolve()
    print(f"leaderboard written to {out}/ (README.md, index.html, results.csv, results.json)")
    print(f"open {(out / 'index.html').as_uri()}")
    return 0
