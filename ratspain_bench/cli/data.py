"""`data check` and `data imbalance`."""
from __future__ import annotations

import sys
from pathlib import Path

from .common import add_data_option, command, print_json


def add_parser(subparsers) -> None:
    p = command(subparsers, "data", "validate a dataset or report its label counts", [
        "ratspain-bench data check --data ~/ratspain", "ratspain-bench data imbalance --format md"])
    sub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")

    c = command(sub, "check", "report every problem, one line each (exit 0 when usable, 2 on errors)", [
        "ratspain-bench data check --data ~/ratspain", "ratspain-bench data check --data labels.json   # labels-only"],
        description="Checks the manifest (columns, levels, labels, duplicate paths, subjects), "
                    "decodes every image (missing, unreadable, truncated) and looks for the same or a "
                    "near-identical image under two subjects (perceptual hash: leakage between folds). "
                    "Prints the dataset's fingerprint (what job folders, MLflow runs and prediction-only entries name).")
    add_data_option(c)
    c.set_defaults(func=run_check)

    i = command(sub, "imbalance", "per-subject label counts (Table 2) and per-fold train/test counts (Table 4)", [
        "ratspain-bench data imbalance", "ratspain-bench data imbalance --data ~/ratspain --format json"])
    add_data_option(i)
    i.add_argument("--format", choices=("md", "json", "csv"), default="md", help="output format (default md)")
    i.set_defaults(func=run_imbalance)

    s = command(sub, "sheet", "a contact sheet PNG: a few faces per subject (rows) and level (columns)", [
        "ratspain-bench data sheet --out sheet.png", "ratspain-bench data sheet --data ~/ratspain --per-level 4"])
    add_data_option(s)
    s.add_argument("--out", type=Path, default=Path("replica-sheet.png"), help="PNG to write (default replica-sheet.png)")
    s.add_argument("--per-level", type=int, default=2, help="faces per subject and level (default 2)")
    s.add_argument("--seed", type=int, default=0, help="which faces are drawn (default 0)")
    s.set_defaults(func=run_sheet)


def run_check(args) -> int:
    from .. import api
    from ..data.check import summarize

    ds, problems = api.check_data(args.data, args.include_low_confidence)
    for p in problems:
        print(p)
    s = summarize(problems)
    n_subjects = ds.table["subject"].nunique() if len(ds.table) else 0
    low = f", {ds.n_low_confidence_excluded} low-confidence excluded" if ds.n_low_confidence_excluded else ""
    verdict = "usable" if s["usable"] else "NOT usable"
    if s["usable"] and len(ds.table):
        print(f"dataset fingerprint: {ds.fingerprint} (what job folders, MLflow runs and prediction-only entries name)")
    print(f"{ds.source}: {len(ds.table)} images{low}, {n_subjects} subjects; "
          f"{s['error']} error(s), {s['warning']} warning(s): {verdict}")
    return 0 if s["usable"] else 2


def run_imbalance(args) -> int:
    from .. import api
    from ..data.imbalance import to_csv, to_markdown

    ds = api.load_dataset(args.data, include_low_confidence=args.include_low_confidence)
    report = api.imbalance(ds)
    if args.format == "json":
        print_json(report)
    elif args.format == "csv":
        sys.stdout.write(to_csv(report))
    else:
        sys.stdout.write(to_markdown(report, title=ds.name))
    return 0


def run_sheet(args) -> int:
    from .. import api

    print(f"wrote {api.contact_sheet(args.data, args.out, args.per_level, args.seed, args.include_low_confidence)}")
    return 0
