"""`ratspain-bench protocols`: list the evaluation protocols `run --protocol` takes, and what each answers."""
from __future__ import annotations

from .common import command, print_json


def add_parser(sub) -> None:
    p = command(sub, "protocols", "list the evaluation protocols (run --protocol NAME) and the question each answers",
                ["ratspain-bench protocols", "ratspain-bench protocols --format json"])
    p.add_argument("--format", choices=("md", "json"), default="md")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import api

    rows = api.list_protocols()
    if args.format == "json":
        print_json({"protocols": rows})
        return 0
    from tabulate import tabulate

    print(tabulate([[r["usage"], r["question"]] for r in rows], headers=["protocol", "what it answers"], tablefmt="github"))
    return 0
