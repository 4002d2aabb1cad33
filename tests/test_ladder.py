"""The Ladder (Blum and Hardt 2015) as the hosted board releases scores: hand-computed sequences, and an independent
implementation written from the paper's pseudo-code (Algorithm 1, in losses) compared on random sequences; the
parameter-free variant against a transcription of the reference code's `FreeLadder`; the split."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ratspain_bench.server import ladder
from ratspain_bench.server.ladder import State, advance


def released(kind, scores, eta=0.05, errors=None):
    state, out = State(), []
    for i, s in enumerate(scores):
        state = advance(kind, state, s, None if errors is None else errors[i], eta)
        out.append(state.released)
    return out


def test_hand_computed_step_sequence():
    # 0.50 first: released; 0.53 is not above 0.50 + 0.05; 0.56 is: released rounded to 0.55; 0.551 is not above 0.60;
    # equal and worse scores release nothing; 0.70 is.
    assert released("step", [0.50, 0.53, 0.56, 0.551, 0.55, 0.30, 0.70]) == [0.5, 0.5, 0.55, 0.55, 0.55, 0.55, 0.7]
    assert released("step", [0.3141, 0.3141, 0.2]) == [0.3, 0.3, 0.3]  # rounded to the step
    assert released("step", [None, 0.42, None], eta=0.02) == [None, 0.42, 0.42]  # a failure releases nothing


def paper_algorithm_1(losses, eta):
    """Blum & Hardt, Algorithm 1, as printed: R_0 = inf; R_t = [R_S(f_t)]_eta if R_S(f_t) < R_{t-1} - eta else R_{t-1}."""
    best, out = math.inf, []
    for loss in losses:
        if loss < best - eta:
            best = eta * round(loss / eta)
        out.append(best)
    return out


@pytest.mark.parametrize("eta", [0.01, 0.02, 0.05, 0.1])
def test_step_equals_the_papers_pseudo_code_on_random_sequences(eta):
    rng = np.random.default_rng(int(eta * 1000))
    for _ in range(200):
        scores = np.clip(np.cumsum(rng.normal(0.01, 0.04, size=30)) + 0.4, 0, 1)
        ours = released("step", list(scores), eta)
        theirs = paper_algorithm_1(list(1 - scores), eta)
        assert np.allclose(ours, 1 - np.array(theirs), atol=1e-9)


def free_ladder(losses_per_example):
    """mrtzh/Ladder.jl's `score!(::FreeLadder, ...)`, transcribed: std of the paired differences, one-sided test."""
    current, leader, out = math.inf, None, []
    for v in losses_per_example:
        v = np.asarray(v, float)
        s = np.std(v, ddof=1) if leader is None else np.std(v - leader, ddof=1)
        if v.mean() < current - s / math.sqrt(len(v)):
            current, leader = v.mean(), v
        out.append(current)
    return out


def test_parameter_free_equals_the_reference_code_on_random_sequences():
    rng = np.random.default_rng(7)
    for _ in range(100):
        n = 60
        errors = [(rng.random(n) < p).astype(int) for p in np.clip(rng.normal(0.35, 0.08, 15), 0.05, 0.95)]
        scores = [1 - e.mean() for e in errors]  # here the score is accuracy: released = 1 - the reference's loss
        ours = released("parameter-free", scores, errors=errors)
        theirs = free_ladder(errors)
        assert np.allclose(ours, [1 - x for x in theirs])


def test_the_bound_counts_releases_and_their_values():
    assert ladder.bits_bound(0.5, 1) == pytest.approx(math.log2(1 + 1 * 3))  # one submission: nothing, or one of 3 values
    assert ladder.bits_bound(0.02, 100) < 100 * math.log2(1139 ** 2)  # far below full precision's 2 log2(N+1) a submission
    assert ladder.bits_bound(0.02, 100, outcomes=14) == pytest.approx(ladder.bits_bound(0.02, 100) + 100 * math.log2(14))


def test_the_split_is_seeded_and_stratified_per_rat_and_label():
    from ratspain_bench.data.dataset import Dataset
    from ratspain_bench.server.partition import draw, subset

    rows = [(f"{s}-{i}", s, i % 2) for s in ("a", "b", "c") for i in range(10)]
    ds = Dataset("d", "mem", pd.DataFrame(rows, columns=["image", "subject", "label"]), has_images=False)
    ids = draw(ds, 0.5, seed=1)
    assert ids == draw(ds, 0.5, seed=1) and ids != draw(ds, 0.5, seed=2)
    t = ds.table.assign(public=ds.table["image"].isin(ids))
    assert (t.groupby(["subject", "label"])["public"].sum() == round(0.5 * 5)).all()  # 5 images a group: 2 public
    part = subset(ds, ids, "public")
    assert part.name == "d-public" and len(part) == len(ids) and set(part.table["image"]) == set(ids)
