"""`ratspain-bench synth OUT_DIR`: render the synthetic RatsPain replica."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from .common import command


def add_parser(sub) -> None:
    p = command(sub, "synth", "render the synthetic RatsPain replica (manifest.csv + images/)", [
        "ratspain-bench synth out/", "ratspain-bench synth out/ --seed 1 --size 128",
        "ratspain-bench synth out/ --per-subject-counts '{\"a\": {\"no_pain\": 5, \"moderate\": 5}}'",
        "ratspain-bench synth held-out/ --hidden", "ratspain-bench synth clips/ --video",
        "ratspain-bench synth two-labs/ --sites 2   # then: run --protocol leave-one-group-out:site"])
    p.add_argument("out_dir", type=Path)
    p.add_argument("--seed", type=int, default=None, help="the seed everything is drawn from (default 0, the built-in replica's)")
    p.add_argument("--hidden", action="store_true",
                   help="draw the seed from the operating system and keep it only in a file outside OUT_DIR readable by you "
                        "(~/.local/share/ratspain_bench/secrets, or $RATSPAIN_SECRETS_DIR): nobody can render these labels "
                        "again, so outside methods are ranked on it")
    p.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    p.add_argument("--per-subject-counts", default="ratspain",
                   help="'ratspain' (the paper's Tables 1-2: 1,138 high-confidence images and 157 low-confidence ones) or "
                        "a JSON object {subject: {no_pain: n, moderate: n, severe: n}}")
    p.add_argument("--low-confidence", type=int, default=None,
                   help="low-confidence images (fewer than three accepted AUs; default 157 with 'ratspain', else 0)")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: up to 2)")
    p.add_argument("--video", action="store_true",
                   help="short synthetic videos instead: 2 groups x 3 rats x pre/post, 60 s at 10 fps, pain action units "
                        "rising in the treated group's post session only; OUT_DIR/videos/*.mp4 and the sidecar videos.csv")
    p.add_argument("--sites", type=int, default=None,
                   help="record the rats in this many labs (shared round-robin): each lab its own camera angle spread, lighting, "
                        "background, white balance and JPEG quality, and a `site` column (with --video too); default: one lab, "
                        "the replica as it has always been")
    p.set_defaults(func=run)


def parse_counts(text: str) -> dict | None:
    if text == "ratspain":
        return None
    try:
        counts = json.loads(text if text.lstrip().startswith("{") else Path(text).read_text())  # JSON, or a file of it
    except FileNotFoundError:
        raise InputError(f"--per-subject-counts {text}: no such file (and not JSON)") from None
    except json.JSONDecodeError as e:
        raise InputError(f"--per-subject-counts: not 'ratspain' nor valid JSON ({e.msg})") from None
    for subject, c in counts.items():
        if not isinstance(c, dict) or not set(c) <= {"no_pain", "moderate", "severe"} or not all(isinstance(v, int) and v >= 0 for v in c.values()):
            raise InputError(f"--per-subject-counts: subject {subject!r} needs non-negative integer no_pain/moderate/severe counts")
    return counts


def run(args) -> int:
    from .. import api

    counts = parse_counts(args.per_subject_counts)
    if args.low_confidence is not None and args.low_confidence < 0:
        raise InputError(f"--low-confidence {args.low_confidence}: want a non-negative number of images")
    if args.out_dir.exists() and any(args.out_dir.iterdir()):
        raise InputError(f"{args.out_dir}: exists and is not empty (choose a new folder)")
    if args.hidden and args.seed is not None:
        raise InputError("--hidden draws its own seed: drop --seed")
    if args.sites is not None:
        from ..data.synth import PAPER_COUNTS

        rats = 6 if args.video else len(counts or PAPER_COUNTS)
        if not 2 <= args.sites <= rats:
            raise InputError(f"--sites {args.sites}: want 2 or more labs (one lab is the default) and at most one per rat ({rats} rats)")
    if args.video:
        if args.hidden or counts is not None or args.low_confidence is not None:
            raise InputError("--video renders its own clips: drop --hidden, --per-subject-counts and --low-confidence")
        sidecar = api.synth(args.out_dir, seed=args.seed or 0, video=True, sites=args.sites)
        print(f"wrote {sidecar}")
        return 0
    from tqdm import tqdm

    with tqdm(desc="rendering", unit="img", disable=None) as bar:
        def progress(done, total):
            bar.total = total
            bar.n = done
            bar.refresh()

        options = dict(size=args.size, counts=counts, jobs=args.jobs, progress=progress, low_confidence=args.low_confidence,
                       sites=args.sites)
        if args.hidden:
            from ..data.replica import hidden_replica

            manifest, kept = hidden_replica(args.out_dir, **options)
        else:
            manifest, kept = api.synth(args.out_dir, seed=args.seed or 0, **options), None
    print(f"wrote {manifest}")
    if kept is not None:
        print(f"its seed is kept only in {kept} (readable by you alone); nothing in {args.out_dir} names it")
    return 0
