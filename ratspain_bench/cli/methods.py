"""`ratspain-bench methods`: list every registered method (and every broken outside folder, with why)."""
from __future__ import annotations

from .common import command, print_json


def add_parser(sub) -> None:
    p = command(sub, "methods", "list registered methods (name, family, parameters, source)", [
        "ratspain-bench methods", "ratspain-bench methods --format json --profile paper", "ratspain-bench methods --pattern 'lbp-*'"])
    p.add_argument("--format", choices=("md", "json"), default="md")
    p.add_argument("--profile", choices=("quick", "paper"), default="quick", help="show parameters as in this profile")
    p.add_argument("--pattern", default=None, help="only names matching this glob")
    p.add_argument("--task", choices=("binary", "au"), help="only methods declaring this task (outside methods are kept: "
                                                             "they declare theirs in their sandbox, checked by `run`)")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import api
    from ..methods.registry import default_registry

    rows = [s.describe(args.profile) for s in api.list_methods(args.pattern)]
    if args.task:
        rows = [r for r in rows if r["tasks"] is None or args.task in r["tasks"]]
    broken = [{"name": b.name, "source": b.source, "reason": b.reason} for b in default_registry().broken]
    suites = api.suites()
    if args.format == "json":
        print_json({"methods": rows, "broken": broken, "suites": suites})
        return 0
    from tabulate import tabulate

    table = [[r["name"], r["family"], ", ".join(r["tasks"]) if r["tasks"] is not None else "declared in its code",
              ", ".join(f"{k}={v}" for k, v in r["params"].items()) + (" (+ its Config's defaults)" if r["sandboxed"] else ""),
              r["source"] + (", runs sandboxed" if r["sandboxed"] else "")] for r in rows]
    print(tabulate(table, headers=["name", "family", "tasks", f"parameters ({args.profile} profile)", "source"], tablefmt="github"))
    print("\nSuites: " + "; ".join(f"{k} ({len(v)})" for k, v in suites.items()))
    parametric = [s.name for s in default_registry().families() if s.trusted and getattr(s.load(), "parametric", None)]
    if parametric:
        print("Parametric families: " + ", ".join(f"`{f}:<model>`" for f in parametric) + " (any timm model name)")
    for b in broken:
        print(f"BROKEN {b['name']} ({b['source']}): {b['reason']}")
    return 0
