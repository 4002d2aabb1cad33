"""`ratspain-bench groups`: compare groups of animals on a `predict --by` summary; the animal is the unit."""
from __future__ import annotations

import json
from pathlib import Path

from .common import command


def add_parser(sub) -> None:
    p = command(sub, "groups", "compare groups of animals (e.g. treated vs control) on a predict --by summary", [
        "ratspain-bench groups scores/summary.csv                      # the column `group`; pre/post paired",
        "ratspain-bench groups scores/summary.csv --group treatment --value mean_rgs --out stats/"],
        description="One value per animal and session (a row of summary.csv). With sessions pre and post, the headline is "
                    "the difference between the groups' mean change (post - pre), by an exact permutation test over animals, "
                    "with Hedges' g and bootstrap intervals over animals; each group's change gets an exact sign-flip test; "
                    "a linear mixed model (statsmodels) has the animal as random effect. Without sessions, the groups' "
                    "animal means are compared.")
    p.add_argument("summary", type=Path, metavar="SUMMARY", help="summary.csv written by `predict --by subject,session`")
    p.add_argument("--group", default="group", help="the column naming each animal's group (default group)")
    p.add_argument("--value", default=None, help="the column compared (default mean_rgs for an AU model, else mean_pain_prob)")
    p.add_argument("--out", type=Path, metavar="DIR", help="also write groups.png and groups.json here")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import api

    result = api.groups(args.summary, group=args.group, value=args.value)
    if args.out is not None:
        from ..paths import atomic_write_text

        args.out.mkdir(parents=True, exist_ok=True)
        result.plot(args.out / "groups.png")
        atomic_write_text(args.out / "groups.json", json.dumps(result.as_dict(), indent=1) + "\n")
    print(json.dumps(result.as_dict(), indent=1) if args.format == "json" else result.text())
    return 0
