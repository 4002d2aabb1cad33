"""`ratspain-bench`: a thin argparse layer over the Python API, one module per command group.

Each module in COMMANDS defines `add_parser(subparsers)` and sets `func` on its parser; handlers
import heavy libraries lazily so `--help` stays fast. `InputError` becomes one line and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import InputError

COMMANDS = ["synth", "data", "methods", "run", "score", "leaderboard", "study", "submit"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ratspain-bench", description="LORO benchmark for rat pain assessment from facial expressions.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{name}":
                continue  # command not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
