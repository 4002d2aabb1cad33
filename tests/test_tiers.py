"""Ranks the data can support: the exact bootstrap over rats, the paired test, Holm, tiers, registered configurations.

Regenerate the golden file after an intended change with `RATSPAIN_UPDATE_GOLDEN=1 pytest tests/test_tiers.py`.
"""
from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from itertools import product
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ratspain_bench import metrics
from ratspain_bench.board import stats

GOLDEN = Path(__file__).parent / "golden"


def _random_cms(n_rows: int, n_rats: int, seed: int) -> list[np.ndarray]:
    """Per-rat confusion matrices (n_rats, 4) of rows of decreasing skill, from fixed random predictions."""
    rng = np.random.RandomState(seed)
    sizes = rng.randint(20, 60, size=(n_rats, 2))  # (pain, no pain) images per rat
    rows = []
    for i in range(n_rows):
        skill = 0.85 - 0.04 * i
        cm = []
        for pos, neg in sizes:
            tp = rng.binomial(pos, np.clip(skill + rng.uniform(-0.1, 0.1), 0, 1))
            tn = rng.binomial(neg, np.clip(skill + rng.uniform(-0.1, 0.1), 0, 1))
            cm.append((tp, neg - tn, pos - tp, tn))
        rows.append(np.array(cm, dtype=float))
    return rows


def _all_ordered(n: int) -> stats.Resamples:
    """Brute force: all n^n ordered draws of n rats with replacement, each of weight 1/n^n."""
    counts = np.array([np.bincount(d, minlength=n) for d in product(range(n), repeat=n)])
    return stats.Resamples(counts, np.full(len(counts), 1 / n ** n), True)


# ---------------------------------------------------------------- exact enumeration


def test_462_distinct_resamples_of_six_rats():
    r = stats.exact_resamples(6)
    assert stats.n_distinct_resamples(6) == 462 == len(r.counts)
    assert len({tuple(c) for c in r.counts}) == 462
    assert (r.counts.sum(axis=1) == 6).all()
    assert r.weights.sum() == pytest.approx(1.0, abs=1e-15)
    # the original sample (each rat once) has probability 6!/6^6
    once = np.flatnonzero((r.counts == 1).all(axis=1))
    assert r.weights[once] == pytest.approx([math.factorial(6) / 6 ** 6])
    assert stats.rat_resamples(6).exact and not stats.rat_resamples(9).exact  # C(17, 9) = 24,310 > MAX_EXACT
    assert stats.rat_resamples(9, n_random=300).counts.shape == (300, 9)


@pytest.mark.parametrize("n", [3, 4])
def test_exact_weights_equal_brute_force(n):
    brute = defaultdict(float)
    for d in product(range(n), repeat=n):
        brute[tuple(np.bincount(d, minlength=n))] += 1 / n ** n
    exact = stats.exact_resamples(n)
    assert len(exact.counts) == len(brute) == stats.n_distinct_resamples(n)
    for counts, w in zip(exact.counts, exact.weights):
        assert w == pytest.approx(brute[tuple(counts)], abs=1e-15)


@pytest.mark.parametrize("n", [3, 4])
def test_exact_p_values_and_intervals_equal_brute_force(n):
    exact, brute = stats.exact_resamples(n), _all_ordered(n)
    cms = _random_cms(5, n, seed=n)
    for other in cms[1:]:
        assert stats.paired_f1_p(cms[0], other, exact) == pytest.approx(stats.paired_f1_p(cms[0], other, brute), abs=1e-12)
    a = stats.bootstrap_over_subjects(cms[2], resamples=exact)
    b = stats.bootstrap_over_subjects(cms[2], resamples=brute)
    assert a == b


def test_weighted_quantile_is_the_inverse_cdf():
    values, weights = [3.0, 1.0, 2.0, float("nan")], [0.5, 0.25, 0.25, 0.9]
    assert stats.weighted_quantile(values, weights, 0.25) == 1.0  # NaN is left out: CDF 0.25 at 1
    assert stats.weighted_quantile(values, weights, 0.26) == 2.0
    assert stats.weighted_quantile(values, weights, 0.5) == 2.0
    assert stats.weighted_quantile(values, weights, 0.975) == 3.0


# ---------------------------------------------------------------- the paired test


def test_paired_p_hand_computed_two_rats():
    # resamples of 2 rats: {1,1} w 1/4, {1,2} w 1/2, {2,2} w 1/4
    a = np.array([[10, 0, 0, 5], [5, 0, 5, 5]], dtype=float)   # F1 1 on rat 1, 2/3 on rat 2
    b = np.array([[5, 0, 5, 5], [6, 0, 4, 5]], dtype=float)    # F1 2/3 on rat 1, 3/4 on rat 2
    # d > 0 on {1,1} and {1,2} (pooled 30/35 against 22/31), d < 0 on {2,2}: p = 2 min(1/4, 3/4)
    assert stats.paired_f1_p(a, b, stats.exact_resamples(2)) == pytest.approx(0.5)
    assert stats.paired_f1_p(a, a, stats.exact_resamples(2)) == 1.0  # d = 0 everywhere: both sides
    worse = a.copy()
    worse[:, 0] -= 4
    worse[:, 2] += 4
    assert stats.paired_f1_p(a, worse, stats.exact_resamples(2)) == 0.0  # better on every resample


def test_holm_hand_computed():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 -> 0.06 (step-down keeps the maximum)
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert stats.holm([]) == []


def test_holm_matches_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.RandomState(0).uniform(0, 0.1, size=12)
    assert stats.holm(p) == pytest.approx(list(multitest.multipletests(p, method="holm")[1]))


def test_tiers_split_where_the_rats_separate_rows():
    good = np.array([[40, 2, 2, 40]] * 6, dtype=float)
    bad = np.array([[20, 20, 22, 22]] * 6, dtype=float)
    found = stats.tiers([good, good.copy(), bad, bad.copy()], stats.exact_resamples(6))
    assert [t.tier for t in found] == [1, 1, 2, 2]
    assert found[0].p_raw is None and found[1].p_raw == 1.0 and found[2].p_raw is None and found[3].p_holm == 1.0


def test_tiers_golden():
    """Tiers of eight rows on six rats (fixed predictions): tier, raw and Holm-adjusted p against the tier's best.

    In this fixture rank 2 is separated from the top while rank 3 is not: rank 3 still starts below rank 2."""
    cms = _random_cms(8, 6, seed=11)
    order = sorted(range(len(cms)), key=lambda i: -stats.f1_of(cms[i].sum(axis=0)))
    found = stats.tiers([cms[i] for i in order], stats.rat_resamples(6))
    text = json.dumps([{"row": i, "pooled_f1": round(float(stats.f1_of(cms[i].sum(axis=0))), 6), "tier": t.tier,
                        "p_raw": None if t.p_raw is None else round(t.p_raw, 8),
                        "p_holm": None if t.p_holm is None else round(t.p_holm, 8)} for i, t in zip(order, found)], indent=1) + "\n"
    path = GOLDEN / "tiers_six_rats.json"
    if os.environ.get("RATSPAIN_UPDATE_GOLDEN") or not path.exists():
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{path} differs (RATSPAIN_UPDATE_GOLDEN=1 to accept)"
    assert len({t.tier for t in found}) > 1  # the fixture separates some rows, not all
    assert [t.tier for t in found] == sorted(t.tier for t in found)  # contiguous in rank


# ---------------------------------------------------------------- on a leaderboard


def _records(preds_by_method: dict, lookup_hash: str = "h"):
    from ratspain_bench.board.collect import FoldRecord, RunRecord

    out = []
    for i, ((method, config), preds) in enumerate(preds_by_method.items()):
        out.append(RunRecord(run_id=f"run{i}", experiment_id="1", dataset="toy", fingerprint="fp", method=method, family="x",
                             seed="0", profile="quick", config_hash=config, source="built-in", status="complete",
                             folds_expected=2, hardware="", start_time=i,
                             folds=tuple(FoldRecord(f"f{j}", s, "complete") for j, s in enumerate(["r1", "r2"])), predictions=preds))
    return out


def _h(method, profile):
    from ratspain_bench.errors import InputError

    if method == "gone":
        raise InputError(f"unknown method {method!r}")
    return "h"


def test_leaderboard_rows_carry_tiers():
    from ratspain_bench.board import build_leaderboards
    from ratspain_bench.board.export import results_csv, results_json
    from ratspain_bench.board.render_md import render_markdown

    labels = pd.DataFrame({"image": list("abcdefgh"), "subject": ["r1"] * 4 + ["r2"] * 4, "y_true": [1, 1, 0, 0] * 2})
    preds = {("same-a", "h"): labels.assign(y_pred=labels["y_true"]), ("same-b", "h"): labels.assign(y_pred=labels["y_true"])}
    lb = build_leaderboards(_records(preds), "", lookup=_h)[0]
    assert [(r.tier, r.tier_p) for r in lb.ranked] == [(1, None), (1, 1.0)]
    text = render_markdown(lb)
    header = next(line for line in text.splitlines() if line.startswith("| Rank"))
    assert [c.strip() for c in header.split("|")][1:4] == ["Rank", "Tier", "Method"] and "**Tier**" in text
    columns = results_csv([lb]).splitlines()[0].split(",")
    assert columns[-3:] == ["tier", "tier_p", "tier_p_raw"]
    assert results_json([lb])["leaderboards"][0]["rows"][1]["tier"] == 1


def test_two_configs_of_one_method_only_the_registered_one_ranked():
    from ratspain_bench.board import build_leaderboards
    from ratspain_bench.board.render_md import render_markdown

    labels = pd.DataFrame({"image": list("abcdefgh"), "subject": ["r1"] * 4 + ["r2"] * 4, "y_true": [1, 1, 0, 0] * 2})
    perfect, half = labels.assign(y_pred=labels["y_true"]), labels.assign(y_pred=[1, 0, 1, 0] * 2)
    lb = build_leaderboards(_records({("m", "h"): half, ("m", "tuned"): perfect, ("gone", "h"): perfect}), "", lookup=_h)[0]
    assert [(r.label, r.config_hash) for r in lb.ranked] == [("m", "h")]  # the better variant is not ranked
    assert {(r.method, r.config_hash) for r in lb.exploratory} == {("m", "tuned"), ("gone", "h")}
    assert all(r.rank is None and r.tier is None for r in lb.exploratory)
    assert "not the registered configuration" in next(r.note for r in lb.exploratory if r.method == "m")
    assert "unknown method 'gone'" in next(r.note for r in lb.exploratory if r.method == "gone")
    text = render_markdown(lb)
    assert "## Exploratory configurations (not ranked)" in text and "Rows per method: gone 1, m 1." in text


def test_registered_hash_is_the_one_run_logs():
    """The registry's configuration (no overrides) hashes as `run` records it; a `--set` variant does not."""
    from ratspain_bench.board.registered import registered_config_hash
    from ratspain_bench.errors import InputError
    from ratspain_bench.evaluation.runner import RunOptions, plan

    dataset = SimpleNamespace(name="d", fingerprint="f", table=pd.DataFrame({"subject": ["a", "b"], "image": ["x", "y"]}))
    default = plan("lbp-r1p8-8x8", dataset, RunOptions(profile="quick")).key.config_hash
    variant = plan("lbp-r1p8-8x8", dataset, RunOptions(profile="quick", overrides={"C": "0.001"})).key.config_hash
    assert registered_config_hash("lbp-r1p8-8x8", "quick") == default != variant
    with pytest.raises(InputError):
        registered_config_hash("no-such-method", "quick")


def test_undefined_f1_of_a_rat_without_pain():
    from ratspain_bench.board import build_leaderboards
    from ratspain_bench.board.export import results_csv, results_json
    from ratspain_bench.board.render_html import render_html
    from ratspain_bench.board.render_md import render_markdown

    # r1: 2 pain images, one found; r2: no pain image and no pain prediction
    labels = pd.DataFrame({"image": list("abcdef"), "subject": ["r1"] * 4 + ["r2"] * 2, "y_true": [1, 1, 0, 0, 0, 0]})
    lb = build_leaderboards(_records({("m", "h"): labels.assign(y_pred=[1, 0, 0, 0, 0, 0])}), "", lookup=_h)[0]
    row = lb.ranked[0]
    assert metrics.f1(metrics.Confusion(0, 0, 0, 2)) == 0.0 and metrics.f1_or_none(metrics.Confusion(0, 0, 0, 2)) is None
    assert row.per_subject["r2"]["f1"] is None and row.per_subject["r1"]["f1"] == pytest.approx(2 / 3)
    assert row.mean_over_subjects["f1"] == pytest.approx(2 / 3)  # over the rats where F1 is defined
    assert "| –/100.00 " in render_markdown(lb) and ">–/100.00</td>" in render_html(lb, with_figures=False)
    csv = pd.read_csv(pd.io.common.StringIO(results_csv([lb])), dtype=str, keep_default_na=False)
    assert csv.loc[csv["label"] == "m", "f1_ratr2"].tolist() == [""]
    assert results_json([lb])["leaderboards"][0]["rows"][0]["per_subject"]["r2"]["f1"] is None
    majority = next(r for r in lb.baselines if r.method == "majority")
    assert majority.per_subject["r2"]["f1"] is None  # predicts no pain on a rat without pain
    low, high = row.ci["mean_f1"]  # resamples of r2 alone have no F1 and are left out
    assert low == pytest.approx(2 / 3) and high == pytest.approx(2 / 3)


def test_equal_pooled_f1_is_ordered_by_pooled_accuracy():
    from ratspain_bench.board import build_leaderboards

    labels = pd.DataFrame({"image": list("abcdefgh"), "subject": ["r1"] * 6 + ["r2"] * 2, "y_true": [1, 1, 1, 0, 0, 0, 1, 0]})
    # zeta: tp 2, fp 0, fn 2, tn 4 (F1 2/3, accuracy 6/8); alpha: tp 3, fp 2, fn 1, tn 2 (F1 2/3, accuracy 5/8)
    zeta = labels.assign(y_pred=[1, 1, 0, 0, 0, 0, 0, 0])
    alpha = labels.assign(y_pred=[1, 1, 1, 1, 1, 0, 0, 0])
    lb = build_leaderboards(_records({("alpha", "h"): alpha, ("zeta", "h"): zeta}), "", lookup=_h)[0]
    assert lb.ranked[0].pooled["f1"] == lb.ranked[1].pooled["f1"]
    assert [(r.label, r.rank) for r in lb.ranked] == [("zeta", 1), ("alpha", 2)]
