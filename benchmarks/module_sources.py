"""The code identity of every registered method (`identity.module_sources`, read by `run` and `leaderboard` on each
call): the import-free lookup against Python's finder (`importlib.util.find_spec`, which imports a dotted name's
parent packages, torch among them), each in a fresh process, as a command starts.

    python benchmarks/module_sources.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path


def by_find_spec(name: str) -> Path | None:
    """The reference lookup: Python's finder."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None) if spec else None
    return Path(origin) if origin and origin.endswith(".py") else None


def child(reference: bool) -> None:
    """In a fresh process: the identities of every registered method; prints seconds, files, whether torch came in."""
    t = time.perf_counter()
    from ratspain_bench import api
    from ratspain_bench.evaluation import identity

    if reference:
        identity._module_file = by_find_spec
    files = {s.name: identity.module_sources(s.target.partition(":")[0]) for s in api.list_methods(None) if isinstance(s.target, str)}
    print(time.perf_counter() - t, sum(map(len, files.values())), "torch" in sys.modules)


def once(reference: bool) -> tuple[float, int, bool]:
    out = subprocess.run([sys.executable, __file__, "--child", "reference" if reference else "import-free"],
                         capture_output=True, text=True, check=True)
    seconds, files, torch = out.stdout.split()
    return float(seconds), int(files), torch == "True"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--child", choices=("reference", "import-free"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child == "reference")
    times = {True: [], False: []}
    for _ in range(args.repeats):
        for reference in (True, False):  # interleaved: both see the same machine load
            seconds, files, torch = once(reference)
            times[reference].append(seconds)
            print(f"{'find_spec' if reference else 'import-free'}: {seconds:.3f} s, {files} files, torch imported: {torch}")
    ref, new = statistics.median(times[True]), statistics.median(times[False])
    print(f"median: find_spec {ref:.3f} s, import-free {new:.3f} s: {ref / new:.1f}x faster")


if __name__ == "__main__":
    main()
