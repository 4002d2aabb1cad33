"""`ratspain-bench methods`: list every registered method."""
from __future__ import annotations

from .common import print_json


def add_parser(sub) -> None:
    p = sub.add_parser("methods", help="list registered methods (name, family, parameters, source)")
    p.add_argument("--format", choices=("md", "json"), default="md")
    p.add_argument("--profile", choices=("quick", "paper"), default="quick", help="show parameters as in this profile")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..methods.registry import PARAMETRIC, default_registry

    reg = default_registry()
    rows = [s.describe(args.profile) for s in reg.specs()]
    if args.format == "json":
        print_json({"methods": rows, "parametric_families": [f"{f}:<model>" for f in PARAMETRIC]})
        return 0
    from tabulate import tabulate

    table = [[r["name"], r["family"], ", ".join(f"{k}={v}" for k, v in r["params"].items()), r["source"]] for r in rows]
    print(tabulate(table, headers=["name", "family", f"parameters ({args.profile} profile)", "source"], tablefmt="github"))
    print("\nParametric families: " + ", ".join(f"`{f}:<model>`" for f in PARAMETRIC) + " (any timm model name)")
    return 0
