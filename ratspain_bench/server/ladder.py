"""The Ladder: what score a hosted board releases to a team (Blum and Hardt, "The Ladder: A Reliable Leaderboard for
Machine Learning Competitions", ICML 2015).

Under leave-one-rat-out a submission's code sees every rat's labels in some fold, so a full-precision score is a
channel its code can write to. The Ladder releases a new score only when a submission beats the team's last released
one by a margin, so a team learns little from submissions that do not really improve:

- `step` (the default, the paper's Algorithm 1, "Ladder with fixed step size"): a submission whose score beats the
  last released one by more than `eta` releases its score rounded to a multiple of `eta`; otherwise nothing changes.
  The number of releases is then at most about 1/eta, which bounds what a team can read (SECURITY.md works the bound).
- `parameter-free` (the paper's Algorithm 2, as the authors' reference code `mrtzh/Ladder.jl` computes it): it
  compares per-image losses with the leader's, releasing when the mean loss falls below the leader's by more than
  s / sqrt(n), s the sample standard deviation of the paired loss differences (a one-sided paired t-test at t = 1).
  Per-image losses are the 0/1 errors; the released value is the submission's score, unrounded.

Scores here are higher-is-better (pooled F1); a loss is 1 - score. The default is `step` because its bound is
explicit: it does not depend on the data, so a host can state it before the competition opens.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

KINDS = ("step", "parameter-free", "none")  # none: every score released at full precision (tests and demonstrations only)


@dataclass(frozen=True)
class State:
    """A team's ladder: its last released score (None before the first) and the leader's per-image errors."""

    released: float | None = None
    leader_errors: tuple[int, ...] | None = None


def round_to(x: float, eta: float) -> float:
    """`x` to the nearest multiple of `eta`, as a clean decimal."""
    digits = max(0, -math.floor(math.log10(eta)) + 2)
    return round(round(x / eta) * eta, digits)


def step(state: State, score: float, eta: float) -> State:
    """Algorithm 1: release round(score, eta) when it beats the released score by more than eta."""
    if state.released is None or score > state.released + eta:
        return State(round_to(score, eta), state.leader_errors)
    return state


def parameter_free(state: State, score: float, errors) -> State:
    """Algorithm 2 (Ladder.jl's `FreeLadder`): release `score` when the mean per-image error is below the leader's by
    more than the standard deviation of the paired differences over sqrt(n). The first submission's test uses the
    standard deviation of its own errors against a leader at infinite loss: it is always released."""
    e = np.asarray(errors, dtype=float)
    if state.leader_errors is None:
        return State(float(score), tuple(int(v) for v in e))
    lead = np.asarray(state.leader_errors, dtype=float)
    s = float(np.std(e - lead, ddof=1)) if len(e) > 1 else 0.0
    if e.mean() < lead.mean() - s / math.sqrt(len(e)):
        return State(float(score), tuple(int(v) for v in e))
    return state


def advance(kind: str, state: State, score: float | None, errors=None, eta: float = 0.02) -> State:
    """The team's state after one more submission (`score` None: it failed, nothing is released)."""
    if score is None or (isinstance(score, float) and math.isnan(score)):
        return state
    if kind == "step":
        return step(state, score, eta)
    if kind == "parameter-free":
        return parameter_free(state, score, errors)
    if kind == "none":
        return State(float(score), state.leader_errors)
    raise ValueError(f"ladder {kind!r}: expected one of {', '.join(KINDS)}")


def bits_bound(eta: float, submissions: int, outcomes: int = 1) -> float:
    """An upper bound on the bits a team reads from the released scores of `submissions` submissions under `step`:
    at most R = floor(1/eta) + 1 releases (each raises the score by more than eta within [0, 1]); the transcript is
    fixed by which submissions released (at most sum_{r <= R} C(k, r) choices) and the released values (increasing
    multiples of eta: at most C(1/eta + 1, r) for r releases). With `outcomes` other visible outcomes per submission
    (failure reasons), each adds log2(outcomes) bits."""
    k = submissions
    grid = int(round(1 / eta)) + 1
    r_max = min(k, grid)
    total = sum(math.comb(k, r) * math.comb(grid, r) for r in range(r_max + 1))
    return math.log2(total) + k * math.log2(max(outcomes, 1))
