"""What the score channel leaks: the exfiltration attack of issue 31, exactly as the service would score it.

Under leave-one-rat-out a submission's code sees every other rat's labels. The attacking code (the one
`tests/test_exfiltration.py` uploads to the real service) predicts "pain" on every test image, except in the fold that
holds out the rat `writer`: there it calls the first `value` test images (in pixel-hash order) "no pain", `value`
being the labels of `per` target images found in its training set, as a binary number (0 for a target it did not
see: a private image, or one of the writer's own). Flipping `a` positives and `c` negatives of an all-"pain" answer
gives the pooled F1 2(P - a) / (P + N - a - c) and accuracy (P - a + c) / N over N public images with P positives.

`views` is what the team reads after each submission (the host's scoring of those predictions, through the Ladder);
`decode` is the attacker's side: for each hypothesis (P, N) it keeps, per submission, the counts (a, c) that reproduce
the view, and guesses each target's bit as the majority over the surviving values. A driver that does not know (P, N)
spends two submissions first (`calibrate`, values `CALIBRATION`): "pain" everywhere (accuracy P/N), then exactly one
image "no pain" (accuracy (P - 1)/N or (P + 1)/N); at full precision the two fix N and P, hence every later (a, c).
Without them several (P, N) can fit every view: (P/2, N/2) where every count is even, (P - 1, N) where every view
flips a positive; the driver then reads halved or shifted values (on 10 to 50% of the test replica's splits).
`python benchmarks/exfiltration.py` runs the attack over many splits of the replica; the figures are in SECURITY.md.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction

from .ladder import State, advance

CALIBRATION = (0, 1)  # the values of the driver's first two submissions: no image flipped, then one


def counts(value: int, writer_keys: Sequence[str], labels: Mapping[str, int]) -> tuple[int, int]:
    """(positives, negatives) among the first `value` of the writer's public test images (hash order)."""
    flipped = sorted(writer_keys)[:value]
    a = sum(labels[k] for k in flipped)
    return a, len(flipped) - a


def f1_after(p: int, n: int, a: int, c: int) -> Fraction:
    """Pooled F1 of "pain" everywhere but `a` positives and `c` negatives called "no pain" (`p` positives of `n`)."""
    return Fraction(2 * (p - a), p + n - a - c)


def accuracy_after(p: int, n: int, a: int, c: int) -> Fraction:
    return Fraction(p - a + c, n)


def written(batch: Sequence[str], labels: Mapping[str, int], seen: set[str]) -> int:
    """The code's `value`: the batch's labels it saw in training, bit i for target i."""
    return sum(labels[t] << i for i, t in enumerate(batch) if t in seen)


def views(labels: Mapping[str, int], public: set[str], subject: Mapping[str, str], batches: Sequence[Sequence[str]],
          writer: str, ladder: str = "step", eta: float = 0.02, calibrate: bool = False) -> list[dict]:
    """The team's view after each submission of `batches` (in order, after the two of `CALIBRATION` with `calibrate`):
    `released`, and under `ladder = "none"` the full-precision `f1` and `accuracy` too. `labels` and
    `subject` cover every image; only `public` ones are scored."""
    n = len(public)
    p = sum(labels[k] for k in public)
    writer_keys = [k for k in public if subject[k] == writer]
    seen = {k for k in public if subject[k] != writer}  # the writer fold's training images
    state, out = State(), []
    for value in [*CALIBRATION] * calibrate + [written(batch, labels, seen) for batch in batches]:
        a, c = counts(value, writer_keys, labels)
        f1 = float(f1_after(p, n, a, c))
        state = advance(ladder, state, f1, eta=eta)
        view = {"released": state.released}
        if ladder == "none":
            view |= {"f1": f1, "accuracy": float(accuracy_after(p, n, a, c))}
        out.append(view)
    return out


def decode(seen_views: Sequence[dict], ladder: str, eta: float, hypotheses: Iterable[tuple[int, int]], per: int,
           calibrated: bool = False) -> list[int]:
    """The attacker's guess of every target's label (batch by batch, `per` a batch) from its team's views (where
    `calibrated`, the first ones are the submissions of `CALIBRATION`, whose a + c it knows). Of the hypotheses (P, N)
    that reproduce every view, the one leaving the fewest candidates wins (ties: the first given); each bit is the
    majority of its surviving candidates (ties: 0)."""
    most = (1 << per) - 1
    best = None
    for p, n in hypotheses:
        state, kept = State(), []
        for i, view in enumerate(seen_views):
            known = CALIBRATION[i] if calibrated and i < len(CALIBRATION) else None  # a calibration's a + c
            fits, nxt = [], state
            for a in range(min(p, most) + 1):
                for c in range(min(n - p, most - a) + 1):
                    if known is not None and a + c != known:
                        continue
                    f1 = f1_after(p, n, a, c)
                    if ladder == "none":
                        ok = (abs(float(f1) - view["f1"]) < 1e-9
                              and abs(float(accuracy_after(p, n, a, c)) - view["accuracy"]) < 1e-9)
                    else:
                        after = advance(ladder, state, float(f1), eta=eta)
                        ok = after.released is not None and abs(after.released - view["released"]) < 1e-9
                        nxt = after if ok else nxt
                    if ok:
                        fits.append(a + c)
            if not fits:
                break
            kept.append(fits)
            state = nxt
        else:
            size = sum(map(len, kept))
            if best is None or size < best[0]:
                best = (size, kept)
    if best is None:
        raise ValueError("no hypothesis (P, N) reproduces the views")
    return [int(2 * sum((m >> i) & 1 for m in fits) > len(fits)) for fits in best[1][len(CALIBRATION) * calibrated:]
            for i in range(per)]


def recovery(guess: Sequence[int], targets: Sequence[str], labels: Mapping[str, int], public: set[str]) -> dict[str, float]:
    """Share of the targets' labels guessed right, apart for the public and the private ones."""
    out = {}
    for half, inside in (("public", True), ("private", False)):
        pairs = [(g, labels[t]) for g, t in zip(guess, targets) if (t in public) == inside]
        out[half] = sum(g == y for g, y in pairs) / len(pairs) if pairs else float("nan")
    return out
