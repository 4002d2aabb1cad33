"""`data check` and `data imbalance`."""
from __future__ import annotations

import sys
from pathlib import Path

from .common import add_data_option, print_json


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("data", help="validate a dataset or report its label counts")
    sub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")

    c = sub.add_parser("check", help="report every problem, one line each (exit 0 when usable, 2 on errors)",
                       description="Checks the manifest (columns, levels, labels, duplicate paths, subjects), "
                                   "decodes every image (missing, unreadable, truncated) and looks for the same or a "
                                   "near-identical image under two subjects (perceptual hash: leakage between folds).")
    add_data_option(c)
    c.set_defaults(func=run_check)

    i = sub.add_parser("imbalance", help="per-subject label counts (Table 2) and per-fold train/test counts (Table 4)")
    add_data_option(i)
    i.add_argument("--format", choices=("md", "json", "csv"), default="md", help="output format (default md)")
    i.set_defaults(func=run_imbalance)

    s = sub.add_parser("sheet", help="a contact sheet PNG: a few faces per subject (rows) and level (columns)")
    add_data_option(s)
    s.add_argument("--out", type=Path, default=Path("replica-sheet.png"), help="PNG to write (default replica-sheet.png)")
    s.add_argument("--per-level", type=int, default=2, help="faces per subject and level (default 2)")
    s.add_argument("--seed", type=int, default=0, help="which faces are drawn (default 0)")
    s.set_defaults(func=run_sheet)


def run_check(args) -> int:
    from ..data.check import inspect_dataset, summarize

    ds, problems = inspect_dataset(args.data, include_low_confidence=args.include_low_confidence)
    for p in problems:
        print(p)
    s = summarize(problems)
    n_subjects = ds.table["subject"].nunique() if len(ds.table) else 0
    low = f", {ds.n_low_confidence_excluded} low-confidence excluded" if ds.n_low_confidence_excluded else ""
    verdict = "usable" if s["usable"] else "NOT usable"
    print(f"{ds.source}: {len(ds.table)} images{low}, {n_subjects} subjects; "
          f"{s['error']} error(s), {s['warning']} warning(s): {verdict}")
    return 0 if s["usable"] else 2


def run_imbalance(args) -> int:
    from ..data.dataset import load_dataset
    from ..data.imbalance import imbalance_report, to_csv, to_markdown

    ds = load_dataset(args.data, include_low_confidence=args.include_low_confidence)
    report = imbalance_report(ds)
    if args.format == "json":
        print_json(report)
    elif args.format == "csv":
        sys.stdout.write(to_csv(report))
    else:
        sys.stdout.write(to_markdown(report, title=ds.name))
    return 0


def run_sheet(args) -> int:
    from ..data.dataset import load_dataset
    from ..data.sheet import contact_sheet

    ds = load_dataset(args.data, include_low_confidence=args.include_low_confidence)
    ds.require_images()
    print(f"wrote {contact_sheet(ds, args.out, per_level=args.per_level, seed=args.seed)}")
    return 0
