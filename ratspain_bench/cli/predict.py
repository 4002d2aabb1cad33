"""`ratspain-bench predict`: score new face images with a trained model (`train`)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .common import add_runs_dir_option, add_sandbox_options, command, sandbox_kind


def add_parser(sub) -> None:
    p = command(sub, "predict", "score face images with a trained model: one row per image", [
        "ratspain-bench predict m/ faces/ --out scores.csv             # a folder, recursively",
        "ratspain-bench predict m/ a.jpg b.png manifest.csv             # files and manifests (a `path` column)",
        "ratspain-bench predict models:/rat-pain/1 faces/ --out s.csv   # from the MLflow model registry",
        "ratspain-bench predict ps/ faces/ --explain beta/              # PainSeeker: a beta heatmap per image",
        "ratspain-bench predict m/ frames/manifest.csv --by subject,session --out scores/scores.csv   # per animal and session",
        "ratspain-bench predict m/ frames/manifest.csv --by subject,session --overlay --out scores/scores.csv   # + annotated videos"],
        description="Writes CSV columns image, pain_probability, pain (0/1 at the model's threshold), the action-unit grades "
                    "when the model has them, and error (why an image could not be scored; the others still are). Exit 0 "
                    "with a warning line when some images failed, 2 when all did. A model of an outside method (trained "
                    "sandboxed) scores each batch in a sandboxed worker; --sandbox none runs that worker unisolated.")
    p.add_argument("model", metavar="MODEL", help="a model folder, runs:/<run>/model or models:/<name>/<version>")
    p.add_argument("inputs", metavar="INPUT", nargs="+", help="image files, folders (recursive) or manifest CSVs")
    p.add_argument("--out", type=Path, help="CSV to write (default: standard output); written complete or not at all")
    p.add_argument("--batch-size", type=int, help="images decoded and scored at once (default: the method's, 512 for LBP, 128 deep)")
    p.add_argument("--explain", type=Path, metavar="DIR", help="PainSeeker: write each image's beta heatmap here")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    p.add_argument("--by", metavar="COLUMNS",
                   help="with one manifest (e.g. from `frames`) and --out DIR/scores.csv: also write DIR/summary.csv (per group "
                        "of these columns, e.g. subject,session: frames, mean P(pain) with a bootstrap interval over frames, "
                        "share called pain, mean RGS and AU grades for an au model, the share of candidate frames that were "
                        "scorable, the share of frames in high grimace), a time course per animal and report.html")
    p.add_argument("--high", type=float, metavar="THRESHOLD",
                   help="with --by: a frame is in high grimace when its score is above this: P(pain), default 0.5 (the model's "
                        "call); the RGS (mean AU grade, 0-2) for an au model, default 0.67 (the published analgesic "
                        "intervention score). summary.csv's high_share and high_threshold")
    p.add_argument("--overlay", action="store_true",
                   help="with --by: also write DIR/overlay/<video>.mp4, each video with the face box frames found (green: "
                        "scorable, red: not), why a frame was not scorable and the latest score drawn in (needs the "
                        "quality.csv that frames writes beside the manifest)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_runs_dir_option(p)
    add_sandbox_options(p)
    p.set_defaults(func=run)


class Bar:
    """A tqdm bar over images on a terminal, nothing otherwise."""

    def __init__(self, quiet: bool):
        self.on, self.bar = not quiet and sys.stderr.isatty(), None

    def __call__(self, n: int, total: int) -> None:
        if not self.on:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="img", dynamic_ncols=True)
        self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args) -> int:
    import warnings

    import pandas as pd

    from .. import api
    from ..errors import InputError
    from ..model.saved import SYNTHETIC_NOTE, SyntheticDataWarning

    if args.batch_size is not None and args.batch_size < 1:
        raise InputError(f"--batch-size {args.batch_size}: must be at least 1")
    by = [c.strip() for c in args.by.split(",") if c.strip()] if args.by else None
    if by is not None and (args.out is None or len(args.inputs) != 1 or Path(args.inputs[0]).suffix.lower() != ".csv"):
        raise InputError("--by needs one manifest CSV as input and --out DIR/scores.csv (the summary goes beside it)")
    if by is None and (args.high is not None or args.overlay):
        raise InputError("--high and --overlay need --by (and one manifest CSV from frames)")
    if args.overlay:
        from ..video.summary import read_quality

        read_quality(Path(args.inputs[0]), required=True)  # checked before any work
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = api.load_model(args.model, args.runs_dir, args.tracking_uri, args.device, sandbox=sandbox_kind(args),
                               time_limit=args.time_limit, memory_mb=args.memory_limit, out_mb=args.out_limit)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if model.synthetic:
        print(f"WARNING: {model.meta['method']}: {SYNTHETIC_NOTE}", file=sys.stderr)
    if args.high is not None:
        from ..video.summary import high_threshold

        high_threshold(args.high, "rgs" if model.meta.get("task") == "au" else "pain_probability")  # before scoring
    tmp = None if args.out is None else args.out.with_name(f".{args.out.name}.{os.getpid()}.tmp")
    if tmp is not None:
        tmp.parent.mkdir(parents=True, exist_ok=True)
    bar, n, failed, first = Bar(args.quiet), 0, 0, ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntheticDataWarning)  # said once above
            sink = sys.stdout if tmp is None else open(tmp, "w", newline="", encoding="utf-8")
            try:
                columns, kept = None, []  # kept: the batches, for --by
                for frame in model.batches(args.inputs, args.batch_size, args.explain, bar):
                    if columns is None:
                        columns = list(frame.columns)
                    if by is not None:
                        kept.append(frame)
                    frame.reindex(columns=columns).to_csv(sink, index=False, header=n == 0)
                    n += len(frame)
                    bad = frame[frame["error"] != ""]
                    failed += len(bad)
                    if len(bad) and not first:
                        first = f"{bad['image'].iloc[0]}: {bad['error'].iloc[0]}"
            finally:
                if sink is not sys.stdout:
                    sink.close()
        bar.close()
        if tmp is not None:
            if failed == n:  # nothing scored: no file of error rows is left behind
                tmp.unlink()
            else:
                os.replace(tmp, args.out)
    except BaseException:
        bar.close()
        if tmp is not None and tmp.exists():
            tmp.unlink()
        raise
    if failed == n:
        print(f"error: none of the {n} images could be read (first: {first})", file=sys.stderr)
        return 2
    if failed:
        print(f"warning: {failed} of {n} images could not be read and have no score (see the error column; first: {first})",
              file=sys.stderr)
    if args.out is not None:
        print(f"scored {n - failed} images -> {args.out}", file=sys.stderr)
    if by is not None:
        from ..video.report import write_report

        scores = pd.concat(kept, ignore_index=True).reindex(columns=columns)
        paths, groups = write_report(scores, Path(args.inputs[0]), by, args.out.parent,
                                     on_warning=lambda line: print(f"warning: {line}", file=sys.stderr), high=args.high,
                                     overlay=args.overlay)
        print(f"summary of {groups} groups -> {paths['summary']}; report -> {paths['report']}", file=sys.stderr)
        if args.overlay:
            print(f"overlay of {sum(k.startswith('overlay/') for k in paths)} video(s) -> {args.out.parent / 'overlay'}", file=sys.stderr)
    return 0

