"""`ratspain-bench train`: fit a method on every animal and save it as an MLflow pyfunc model with its card."""
from __future__ import annotations

from pathlib import Path

from .common import add_data_option, add_runs_dir_option, add_sandbox_options, command, one_method, parse_overrides, sandbox_kind


def add_parser(sub) -> None:
    p = command(sub, "train", "fit a method on every animal; save an MLflow model and its model card", [
        "ratspain-bench train --method lbp-r1p8-8x8 --out m/                 # on the synthetic replica (its card says so)",
        "ratspain-bench train --method painseeker --data ~/ratspain --profile paper --device cuda --out ps/ --evaluate",
        "ratspain-bench train --method timm:efficientnet_b0 --set epochs=5 --out m/ --register rat-pain",
        "ratspain-bench train --from-run 3f2a... --data ~/ratspain --out m/   # the config and seed of a LORO parent run",
        "ratspain-bench train --method my-submission --out m/               # outside code: fitted and saved sandboxed"],
        description="Fit the method on every subject of the dataset with exactly the config of its leaderboard row (the same "
                    "config and code hash), and save an MLflow pyfunc model in --out: the fitted method, its preprocessing, a "
                    "signature, package versions, pip requirements and MODEL_CARD.md. The card quotes the LORO evidence of the "
                    "same dataset, config, code and seed from the MLflow store (--evaluate runs it first when missing). The "
                    "model is also logged as an MLflow run (experiment ratspain-models/<dataset>). An outside method "
                    "(submission, untrusted plugin) is fitted and saved in a sandboxed worker; its model is scored in such "
                    "workers too (never imported by `predict`).")
    add_data_option(p)
    p.add_argument("--method", "--methods", dest="method", help="method name (see `ratspain-bench methods`); with --from-run, taken from the run")
    p.add_argument("--out", required=True, help="model folder to write (must not exist or be empty)")
    p.add_argument("--profile", choices=("quick", "paper"), default="quick")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    p.add_argument("--weights", help="deep methods: none, hub, lite0 or a local weights file (as `run`)")
    p.add_argument("--finetune", choices=("full", "frozen"), help="deep methods: as `run`")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a config parameter (repeatable)")
    p.add_argument("--task", choices=("binary", "au"), default="binary",
                   help="au: the model also grades the four action units 0/1/2 (predict writes au_<name> columns)")
    p.add_argument("--from-run", metavar="RUN_ID", help="take method, config, profile and seed from this MLflow LORO parent run")
    p.add_argument("--register", metavar="NAME", help="also add the model to the MLflow model registry under NAME")
    p.add_argument("--evaluate", action="store_true", help="run LORO with this exact config first (resumed if done), for the card's evidence")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    add_runs_dir_option(p)
    add_sandbox_options(p)
    p.add_argument("--state-limit", type=int, default=1024, metavar="MIB",
                   help="outside methods: the most their saved state may hold (plain files and folders only; default 1024)")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import api
    from ..errors import InputError

    if not args.method and not args.from_run:
        raise InputError("train: give --method NAME (or --from-run RUN_ID)")
    model = api.train(one_method(args, "train"), args.data, out=args.out, profile=args.profile, seed=args.seed, device=args.device,
                      set=parse_overrides(args.set), weights=args.weights, finetune=args.finetune, from_run=args.from_run,
                      register=args.register, evaluate=args.evaluate, runs_dir=args.runs_dir, tracking_uri=args.tracking_uri,
                      include_low_confidence=args.include_low_confidence, quiet=args.quiet, task=args.task,
                      sandbox=sandbox_kind(args), time_limit=args.time_limit, memory_mb=args.memory_limit, state_mb=args.state_limit, out_mb=args.out_limit)
    m = model.meta
    print(f"{m['method']} trained on {m['dataset']['n']} images of {m['dataset']['name']} (config {m['config_hash']}, code {m['code_hash']})")
    print(f"model: {args.out}   card: {Path(args.out) / 'MODEL_CARD.md'}   MLflow: runs:/{m['mlflow_run']}/model")
    if args.register:
        print(f"registered as {args.register} in {m['tracking_uri']}")
    print(f"LORO evidence: run {m['evidence_run']}" if m["evidence_run"] else "LORO evidence: none found (see the card; --evaluate runs it)")
    if model.synthetic:
        from ..model.saved import SYNTHETIC_NOTE

        print(f"WARNING: {SYNTHETIC_NOTE}")
    return 0
