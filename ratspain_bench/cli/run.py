"""`ratspain-bench run`: the LORO protocol for each method, tracked in MLflow, predictions written."""
from __future__ import annotations

from pathlib import Path

from .common import add_data_option, add_runs_dir_option, add_sandbox_options, command, parse_overrides, sandbox_kind


def add_parser(sub) -> None:
    p = command(sub, "run", "run methods under leave-one-rat-out and log to MLflow", [
        "ratspain-bench run                                          # the quick suite on the synthetic replica",
        "ratspain-bench run --suite paper --profile paper --device cuda",
        "ratspain-bench run --methods lbp-r3p8-4x4,timm:efficientnet_b0 --seed 1 --jobs 2",
        "ratspain-bench run --methods painseeker --set lambda=0.5 --set epochs=20 --data ~/ratspain",
        "ratspain-bench run --task au --methods lbp-r1p8-8x8,painseeker  # the four action-unit grades",
        "ratspain-bench run --methods my-method --time-limit 600     # a submission, sandboxed",
        "ratspain-bench run --suite paper --profile paper --devices cuda:0,cuda:1,cuda:2,cuda:3",
        "ratspain-bench run --suite paper --profile paper --launcher submitit --partition gpu --gpus-per-job 1 --time-min 240"])
    add_data_option(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--methods", "--method", help="comma-separated method names (see `ratspain-bench methods`), e.g. "
                                                 "lbp-r3p8-4x4,timm:resnet18 (--method is the same)")
    g.add_argument("--suite", help="a named suite: paper (Table 3's nine methods), quick (the same nine in the quick profile plus two "
                                   "offline-pretrained EfficientNet-Lite0 rows; the default), lbp (the six LBP-SVM rows), au (the "
                                   "methods of the action-unit track, with --task au)")
    p.add_argument("--profile", choices=("quick", "paper"), default="quick", help="quick: sized for a 2-core CPU; paper: the paper's settings (GPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task", choices=("binary", "au"), default="binary",
                   help="binary: pain / no pain (the paper's Table 3); au: the four action-unit grades 0/1/2 of each test image, "
                        "scored per AU (kappa) and as the RGS score (ICC), with the binary label derived the paper's way")
    p.add_argument("--protocol", default="loro",
                   help="how the data is cut into folds: loro (the paper's leave-one-rat-out, the default), pose-shift (LORO "
                        "trained on frontal faces only, scored per pose bin; pose-shift:frontal+moderate to train on two bins), "
                        "leave-one-group-out:COLUMN (one fold per value of a manifest column, e.g. site); several, comma-separated, "
                        "run one after the other in this process (loro,pose-shift); see `ratspain-bench protocols`")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    p.add_argument("--weights", help="deep methods: none, hub (timm's pretrained, needs network), lite0 (the offline extra) or a local weights file")
    p.add_argument("--finetune", choices=("full", "frozen"), help="deep methods: train the whole network, or only the head on cached backbone features")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a config parameter of every method run (repeatable), e.g. --set epochs=5")
    p.add_argument("--jobs", default="auto", help="worker processes for the folds of methods whose folds are light once their shared "
                                                  "work is done (frozen deep heads: features are computed once, with every core, then "
                                                  "the heads of all folds and methods share the cores); auto (default): one per core")
    p.add_argument("--quiet", action="store_true", help="log lines instead of progress bars")
    g = p.add_argument_group("where folds run (trusted methods; outside methods always run here, sandboxed)")
    g.add_argument("--launcher", choices=("local", "submitit"), default="local",
                   help="local: this machine (default); submitit: one job per fold on SLURM (local processes where there is no SLURM)")
    g.add_argument("--devices", help="local: one worker per GPU, each seeing only its own, one fold per GPU at a time, e.g. cuda:0,cuda:1")
    g.add_argument("--cluster", choices=("slurm", "local", "debug"), help="submitit: force an executor (default: SLURM where sbatch exists)")
    g.add_argument("--partition", help="submitit: SLURM partition")
    g.add_argument("--time-min", type=int, help="submitit: time limit per fold job in minutes (default 120)")
    g.add_argument("--gpus-per-job", type=int, help="submitit: GPUs per fold job (default 0)")
    g.add_argument("--cpus-per-job", type=int, help="submitit: CPUs per fold job (default 4)")
    g.add_argument("--array-size", type=int, dest="array_parallelism", help="submitit: at most this many fold jobs at once (default 32)")
    g.add_argument("--submitit-folder", type=Path, dest="folder", help="submitit: logs and pickles (default RUNS_DIR/submitit)")
    add_sandbox_options(p)
    add_runs_dir_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..evaluation.record import tracking_uri
    from ..protocols import get_protocol

    protocols = [get_protocol(p.strip()).id for p in args.protocol.split(",") if p.strip()]  # unknown names fail first
    failed = 0
    for i, protocol in enumerate(protocols):  # one process: imports, the store and in-process caches are shared
        if len(protocols) > 1:
            print(("\n" if i else "") + f"## Protocol {protocol}\n")
        failed |= _run_one(args, protocol)
    print(f"\nPredictions: {Path(args.runs_dir) / 'predictions'}   MLflow: {tracking_uri(args.runs_dir, args.tracking_uri)}")
    return failed


def _run_one(args, protocol: str) -> int:
    from .. import api

    methods = [n.strip() for n in args.methods.split(",") if n.strip()] if args.methods else None
    results = api.run(methods, args.data, include_low_confidence=args.include_low_confidence, suite=args.suite, profile=args.profile,
                      seed=args.seed, device=args.device, jobs=args.jobs, runs_dir=args.runs_dir, tracking_uri=args.tracking_uri,
                      set=parse_overrides(args.set), weights=args.weights, finetune=args.finetune, sandbox=sandbox_kind(args),
                      time_limit=args.time_limit, memory_mb=args.memory_limit, out_mb=args.out_limit, quiet=args.quiet, launcher=args.launcher,
                      devices=args.devices, cluster=args.cluster, partition=args.partition, time_min=args.time_min,
                      gpus_per_job=args.gpus_per_job, cpus_per_job=args.cpus_per_job, array_parallelism=args.array_parallelism,
                      folder=args.folder, task=args.task, protocol=protocol)
    print(results.markdown())
    print("Cells: F1 of the pain class / accuracy %. LORO (pooled): one confusion matrix summed over all folds "
          "(the paper's LORO column); mean over rats: the unweighted mean of the per-rat cells.")
    if args.task == "au":
        print("\n" + results.au_markdown())
        print("Binary cells above: the label derived from the predicted AU grades (rounded mean >= 1). κw: quadratic-weighted "
              "Cohen's kappa against the raters' consensus grade, pooled; RGS: the mean of the four AU grades, ICC(A,1) "
              "(two-way random effects, absolute agreement, single measure) against the consensus score.")
    for r in results.failed:
        print(f"FAILED {r.method}: {r.error}")
    for name, why in results.not_ranked().items():
        print(f"{name}: {why}")
    return 1 if results.failed else 0
