"""`ratspain-bench`: argument parsing and printing over the Python API (`ratspain_bench.api`).

Each module in COMMANDS defines `add_parser(subparsers)` (through `common.command`, which gives every
subcommand `--debug`, no abbreviations and its examples) and sets `func`; handlers import the API
lazily so `--help` stays fast. Bad input (`InputError`) is one line and exit code 2; anything else
unexpected is one line and exit code 1; `--debug` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import re
import sys

from .. import __version__
from ..errors import InputError
from .common import EXAMPLES_FORMAT, debug_parent

COMMANDS = ["synth", "data", "methods", "protocols", "run", "score", "leaderboard", "study", "submit", "train", "predict", "frames", "detector", "groups", "serve", "server"]
EXAMPLES = """examples:
  ratspain-bench run                                  # the quick suite on the synthetic replica
  ratspain-bench run --methods lbp-r1p8-8x8 --data ~/ratspain
  ratspain-bench leaderboard --out leaderboard
  ratspain-bench <command> --help                     # options and examples of a command"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ratspain-bench", description="LORO benchmark for rat pain assessment from facial expressions.",
                                     parents=[debug_parent()], allow_abbrev=False, epilog=EXAMPLES, formatter_class=EXAMPLES_FORMAT)
    parser.add_argument("--version", action="version", version=f"ratspain-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f".{name}", __name__).add_parser(sub)
    return parser


class Printable:
    """A text stream that drops terminal control characters (C0 but tab, newline and carriage return; DEL; C1; the
    bidirectional overrides) from what is written: outside strings (a folder's name, a worker's failure) reach the
    terminal as text, never as escape sequences."""

    CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(self.CONTROL.sub("", text))

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main(argv=None) -> int:
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = Printable(out), Printable(err)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = out, err


def _main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.debug = getattr(args, "debug", False)
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
    except Exception as e:  # a bug or an environment failure: one line, the traceback with --debug
        if args.debug:
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        print(f"error: {type(e).__name__}: {first} (run with --debug for the traceback)", file=sys.stderr)
        return 1
