"""Options and helpers shared by the commands."""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import InputError

EXAMPLES_FORMAT = argparse.RawDescriptionHelpFormatter


def debug_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show Python tracebacks")
    return p


def command(sub, name: str, help: str, examples: list[str], description: str | None = None):
    """A subcommand parser with `--debug`, no abbreviated options, and an `examples:` section in its --help."""
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples)
    p = sub.add_parser(name, help=help, description=description or help, epilog=epilog, formatter_class=EXAMPLES_FORMAT,
                       parents=[debug_parent()], allow_abbrev=False)
    return p


def add_data_option(p) -> None:
    p.add_argument("--data", default=None, help="folder with manifest.csv, a manifest CSV, an annotation JSON, or a SUBJECT/LEVEL tree (default: the synthetic replica)")
    p.add_argument("--include-low-confidence", action="store_true", help="keep rows with confidence=low (excluded by default, as in the paper)")


def add_runs_dir_option(p) -> None:
    p.add_argument("--runs-dir", default="ratspain-runs", help="local MLflow store, job folders and predictions (default ./ratspain-runs)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else RUNS_DIR/mlflow.db)")


def add_sandbox_options(p) -> None:
    p.add_argument("--sandbox", choices=("auto", "runsc", "bwrap", "none"), default="auto",
                   help="how outside methods (submissions, plugins) run, one worker per fold: runsc (gVisor, a kernel of its own "
                        "per worker), bwrap (bubblewrap, namespaces on the host's kernel: one worker at a time per machine), none "
                        "(not isolated; rows marked `unsandboxed`); auto (default): runsc where it works, else bwrap")
    p.add_argument("--no-sandbox", action="store_true", help="the same as --sandbox none")
    p.add_argument("--time-limit", type=float, default=1800, metavar="S", help="wall-clock limit per fold of an outside method (default 1800 s)")
    p.add_argument("--memory-limit", type=int, default=8192, metavar="MIB",
                   help="memory limit per fold of an outside method, shared mappings included, where a cgroup can be made (default 8192)")
    p.add_argument("--out-limit", type=int, default=256, metavar="MIB",
                   help="the most an outside method's worker may write to its output folder and into any one file, its log "
                        "included (default 256; a saved model's state has --state-limit on top)")


def one_method(args, command: str) -> str | None:
    """`--method` (also spelled `--methods`) of a command that takes one method."""
    if args.method and "," in args.method:
        raise InputError(f"{command} takes one method (--method NAME), not a list: run it once per method")
    return args.method


def sandbox_kind(args) -> str:
    """--sandbox, with --no-sandbox as its older spelling of `none`."""
    return "none" if getattr(args, "no_sandbox", False) else getattr(args, "sandbox", "auto")


def parse_overrides(items: list[str], option: str = "--set") -> dict:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InputError(f"{option} {item!r}: expected NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


def dataset(args):
    from .. import api

    return api.load_dataset(args.data, args.include_low_confidence)


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")
