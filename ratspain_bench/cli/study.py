"""`ratspain-bench study sensitivity|tune`: Optuna studies over the LORO protocol."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import InputError
from .common import add_data_option, add_runs_dir_option, add_sandbox_options, command, dataset, one_method, parse_overrides, sandbox_kind


def _common(p, method_default: str) -> None:
    add_data_option(p)
    p.add_argument("--method", "--methods", dest="method", default=method_default, help=f"a registered method (default {method_default}; see `ratspain-bench methods`)")
    p.add_argument("--profile", choices=("quick", "paper"), default="quick", help="quick: sized for a 2-core CPU; paper: the paper's settings")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="hold a config parameter at this value in every trial (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--protocol", default="loro", help="loro (default), pose-shift, leave-one-group-out:COLUMN (see `ratspain-bench run --help`)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna storage shared by workers: sqlite:///x.db, postgresql://user:pw@host/db, journal:PATH, redis://... "
                        "(default: journal file RUNS_DIR/optuna.journal)")
    p.add_argument("--study-name", default=None, help="Optuna study name (default: derived from method, settings and data, so a rerun resumes)")
    p.add_argument("--out", default=None, metavar="DIR", help="report folder (default RUNS_DIR/studies/<study-name>)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    add_sandbox_options(p)
    add_runs_dir_option(p)


def add_parser(sub) -> None:
    p = command(sub, "study", "Optuna studies: sensitivity grids (Figure 5) and nested-LORO tuning", [
        "ratspain-bench study sensitivity --finetune frozen --out figure5", "ratspain-bench study tune --method lbp-r1p8-8x8 --n-trials 10"])
    ss = p.add_subparsers(dest="study_command", required=True, metavar="STUDY")
    s = command(ss, "sensitivity", "one-at-a-time sensitivity grid (default: the method's declared grid; PainSeeker's is the paper's Figure 5)", [
        "ratspain-bench study sensitivity --finetune frozen --jobs 2 --out figure5   # the paper's Figure 5",
        "ratspain-bench study sensitivity --method lbp-r1p8-8x8 --param C=0.1,1,10",
        "ratspain-bench study sensitivity --storage postgresql://u:pw@db/optuna --study-name fig5 --n-trials 5   # one worker of many"],
        description="Each grid point is a full leave-one-rat-out run scored by pooled F1, one parameter varied at a "
                    "time with the others at their defaults. The scores use the test rats: this is an analysis, not a "
                    "tuning result (see `study tune`). Writes DIR/sensitivity.csv (param,value,pooled_f1,pooled_accuracy), "
                    "DIR/sensitivity.png, DIR/sensitivity.md; rerunning resumes from the Optuna storage.")
    _common(s, "painseeker")
    s.add_argument("--param", action="append", default=[], metavar="NAME=v1,v2,...",
                   help="a parameter and its grid values (repeatable); default: the method's SENSITIVITY_GRID "
                        "(PainSeeker: lambda 0.05,0.1,0.5,1,1.5; delta 0.05,0.1,0.15,0.2,0.5; k_high 3,5,10,15,20)")
    s.add_argument("--finetune", choices=("frozen", "full"), default=None, help="deep methods: frozen backbone (cached features) or full fine-tuning")
    s.add_argument("--n-trials", type=int, default=None, help="at most this many grid points in this worker (default: until the grid is done)")
    s.add_argument("--jobs", default="auto", help="worker processes on this machine sharing the study, each with cores / jobs torch "
                                                   "threads; auto (default): one per core (the first point fills the feature cache, then "
                                                   "the workers split the other points)")
    s.set_defaults(func=run_sensitivity)

    t = command(ss, "tune", "nested-LORO hyper-parameter search (TPE, pruning across inner folds)", [
        "ratspain-bench study tune --method painseeker --n-trials 20",
        "ratspain-bench study tune --method lbp-r1p8-8x8 --space C=0.001..100:log",
        "ratspain-bench study tune --storage postgresql://u:pw@db/optuna --study-name t1 --n-trials 10   # one worker of many"],
        description="For each held-out rat, an inner leave-one-rat-out over the training rats chooses the "
                    "hyper-parameters; the held-out rat scores the choice. Search space: the method's declared "
                    "space ([search_space] of a submission, SEARCH_SPACE of a class) or --space.")
    _common(t, "painseeker")
    t.add_argument("--n-trials", type=int, default=20, help="trials per outer fold in this worker (default 20; 0: only rewrite the report)")
    t.add_argument("--space", action="append", default=[], metavar="NAME=SPEC",
                   help="search NAME over LOW..HIGH, LOW..HIGH:log or a,b,c (repeatable; replaces the declared space)")
    t.add_argument("--no-prune", action="store_true", help="never prune trials (default: MedianPruner across inner folds)")
    t.set_defaults(func=run_tune)


def _options(args) -> dict:
    from ..evaluation.sandbox import SandboxSettings

    if args.n_trials is not None and args.n_trials < 0:
        raise InputError("--n-trials must be 0 or more")
    return dict(profile=args.profile, fixed=parse_overrides(args.set), seed=args.seed, device=args.device, runs_dir=Path(args.runs_dir),
                tracking_uri=args.tracking_uri, storage=args.storage, study_name=args.study_name,
                out_dir=Path(args.out) if args.out else None, quiet=args.quiet, n_trials=args.n_trials,
                sandbox=SandboxSettings(sandbox_kind(args), args.time_limit, args.memory_limit, out_mb=args.out_limit),
                protocol=args.protocol)


def run_sensitivity(args) -> int:
    from .. import api
    from ..study.sensitivity import parse_param

    grid = None
    if args.param:
        grid = {}
        for item in args.param:
            name, values = parse_param(item)
            if name in grid:
                raise InputError(f"--param {name} is given twice")
            grid[name] = values
    res = api.sensitivity(one_method(args, "study sensitivity"), dataset(args), grid=grid, jobs=args.jobs, finetune=args.finetune, **_options(args))
    from tabulate import tabulate

    print(tabulate(res.rows.values.tolist(), headers=list(res.rows.columns), tablefmt="github", floatfmt=".4f"))
    print("\nThese scores use the test rats: an analysis of sensitivity, not a tuning result (use `study tune`).")
    for n in res.notes:
        print(f"Note: {n}")
    for point, err in res.failed.items():
        print(f"FAILED {point}: {err}")
    state = ("complete" if res.complete else f"incomplete: {len(res.failed)} point(s) failed" if res.failed
             else "incomplete (other workers may still be running; rerun to resume)")
    print(f"Study {res.study_name} in {res.storage}: {state}; this worker ran {res.ran} point(s) in {res.seconds:.1f} s")
    print(f"CSV: {res.csv}\nFigure: {res.png}\nReport: {res.report}")
    return 1 if res.failed else 0


def run_tune(args) -> int:
    from .. import api

    res = api.tune(one_method(args, "study tune"), dataset(args), space=args.space, prune=not args.no_prune, **_options(args))
    sys.stdout.write(res.report.read_text())
    print(f"\nReport: {res.report}  (also tune.json, tune_outer.csv, importance.csv in {res.out_dir})")
    return 0
