"""`ratspain-bench run`: the LORO protocol for each method, tracked in MLflow, predictions written."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .common import add_data_option, add_runs_dir_option


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run methods under leave-one-rat-out and log to MLflow")
    add_data_option(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--methods", help="comma-separated method names (see `ratspain-bench methods`), e.g. lbp-r3p8-4x4,timm:resnet18")
    g.add_argument("--suite", choices=("paper", "quick", "lbp"), help="paper: Table 3's nine methods; quick: the same nine in the quick profile plus two offline-pretrained EfficientNet-Lite0 rows (default); lbp: the six LBP-SVM rows")
    p.add_argument("--profile", choices=("quick", "paper"), default="quick", help="quick: sized for a 2-core CPU; paper: the paper's settings (GPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    p.add_argument("--weights", help="deep methods: none, hub (timm's pretrained, needs network), lite0 (the offline extra) or a local weights file")
    p.add_argument("--finetune", choices=("full", "frozen"), help="deep methods: train the whole network, or only the head on cached backbone features")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a config parameter of every method run (repeatable), e.g. --set epochs=5")
    p.add_argument("--jobs", type=int, default=1, help="folds of one method in parallel processes (default 1)")
    p.add_argument("--quiet", action="store_true", help="log lines instead of progress bars")
    add_runs_dir_option(p)
    p.set_defaults(func=run)


def parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise InputError(f"--set {item!r}: expected NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


def run(args) -> int:
    from ..data import load_dataset
    from ..methods.registry import get_method
    from ..runner import SUITES, RunOptions, method_config, run_methods
    from .table import results_table

    names = args.methods.split(",") if args.methods else list(SUITES[args.suite or "quick"])
    names = [n.strip() for n in names if n.strip()]
    overrides = parse_overrides(args.set)
    deep = {k: v for k, v in (("weights", args.weights), ("finetune", args.finetune)) if v is not None}
    opts = RunOptions(profile=args.profile, seed=args.seed, device=args.device, runs_dir=Path(args.runs_dir),
                      tracking_uri=args.tracking_uri, jobs=args.jobs, quiet=args.quiet, overrides=overrides,
                      where_declared=deep, data=args.data, include_low_confidence=args.include_low_confidence)
    for n in names:  # fail fast on unknown names and parameters, before any work
        try:
            method_config(get_method(n), opts)
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{n}: {e.args[0] if e.args else e}") from None
    dataset = load_dataset(args.data, args.include_low_confidence)
    dataset.require_images()
    results = run_methods(names, dataset, opts)
    print(results_table(results, dataset))
    failed = [r for r in results if r.status != "complete"]
    for r in failed:
        print(f"FAILED {r.method}: {r.error}")
    print(f"\nPredictions: {Path(args.runs_dir) / 'predictions'}   MLflow: {opts.tracking_uri or 'sqlite:///' + str(Path(args.runs_dir).resolve() / 'mlflow.db')}")
    return 1 if failed else 0
