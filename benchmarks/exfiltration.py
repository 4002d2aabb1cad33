"""How many hidden labels the score channel gives away: the exfiltration attack of issue 31 (`server.leakage`, checked
view by view against the real service in tests/test_exfiltration.py) on the replica's 1,138 labelled images, over many
secret public/private splits.

    python benchmarks/exfiltration.py [--splits 50] [--public 0.5] [--bits 6] [--eta 0.02]

The attacking code targets every image of one rat (the victim), `--bits` labels a submission, written into the number
of test images the fold holding out another rat (the writer) calls "no pain". The attacker is told the number of public
images and of positives among them (a real one spends a few submissions on them). Reported per release rule: the
share of the victim's public and private labels guessed right (mean and range over splits), against the best constant
guess, and the submissions spent.
"""
from __future__ import annotations

import argparse
import statistics
from types import SimpleNamespace

import pandas as pd

from ratspain_bench.data.synth import plan_rows
from ratspain_bench.server import leakage
from ratspain_bench.server.partition import draw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", type=int, default=50)
    ap.add_argument("--public", type=float, default=0.5)
    ap.add_argument("--bits", type=int, default=6, help="labels a submission carries")
    ap.add_argument("--eta", type=float, default=0.02)
    args = ap.parse_args()

    rows = pd.DataFrame(plan_rows(0))
    rows = rows[rows["label"] != ""].assign(image=lambda t: t["path"], label=lambda t: t["label"].astype(int))
    labels = dict(zip(rows["image"], rows["label"]))
    subject = dict(zip(rows["image"], rows["subject"].astype(str)))
    victim, writer = rows["subject"].value_counts().index[:2]  # the two largest rats (the writer needs 2^bits - 1 images)
    targets = sorted(k for k in labels if subject[k] == victim)
    batches = [targets[i:i + args.bits] for i in range(0, len(targets), args.bits)]
    print(f"{len(labels)} images; victim {victim} ({len(targets)} images), writer {writer}; {len(batches)} submissions "
          f"of {args.bits} labels; {args.splits} splits, public share {args.public}")
    results: dict[str, list[dict]] = {"none": [], "step": []}
    for seed in range(args.splits):
        public = set(draw(SimpleNamespace(table=rows), args.public, seed))
        hypothesis = [(sum(labels[k] for k in public), len(public))]  # (P, N), told to the attacker
        for ladder in results:
            seen = leakage.views(labels, public, subject, batches, writer, ladder, args.eta)
            guess = leakage.decode(seen, ladder, args.eta, hypothesis, args.bits)
            results[ladder].append(leakage.recovery(guess, targets, labels, public))
    share = sum(labels[k] for k in targets) / len(targets)
    print(f"the victim's labels: {share:.3f} pain; guessing 'no pain' for all is right on {1 - share:.3f}, 'pain' on {share:.3f}")
    for ladder, rs in results.items():
        parts = []
        for half in ("public", "private"):
            xs = [r[half] for r in rs]
            parts.append(f"{half} {statistics.mean(xs):.3f} [{min(xs):.3f}, {max(xs):.3f}]")
        name = "full precision (ladder none)" if ladder == "none" else f"Ladder step, eta {args.eta}"
        print(f"{name}: " + "; ".join(parts))


if __name__ == "__main__":
    main()
