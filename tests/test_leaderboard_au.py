"""The au task's leaderboard: its own board per dataset, AU figures per row, ranking and tiers on RGS ICC(A,1),
the human-ceiling reference row, the page and the exported data.

The golden tiers file is computed by a slow reference (ICC(A,1) of every resample's replicated rows with
`metrics_au.icc_a1`, an explicit tier walk) and checked against the vectorised `stats.tiers`. Regenerate it
after an intended change of the fixture with:

    .venv/bin/python -c "import sys; sys.path.insert(0, 'tests'); import test_leaderboard_au as t; t.write_golden()"
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ratspain_bench import metrics_au
from ratspain_bench.board import au, build_leaderboards, stats, write_leaderboards
from ratspain_bench.board.collect import FoldRecord, RunRecord
from ratspain_bench.board.export import results_csv, results_json
from ratspain_bench.board.render_html import render_html
from ratspain_bench.board.render_md import render_markdown
from ratspain_bench.tasks import AUS, BLANK, derived_label

GOLDEN = Path(__file__).parent / "golden" / "tiers_au_six_rats.json"
RATS = ("1", "2", "3", "4", "5", "6")
SIZES = (18, 24, 15, 30, 21, 27)
CEILING = {**{f"ceiling_au_{a}_{k}": v for a, (q, al, acc) in
              zip(AUS, ((0.81, 0.74, 0.86), (0.62, 0.55, 0.71), (0.77, 0.70, 0.82), (0.58, 0.49, 0.69)))
              for k, v in (("qwk", q), ("alpha", al), ("accuracy", acc))},
           "ceiling_rgs_icc_a1": 0.8731, "ceiling_rgs_pearson_r": 0.88, "ceiling_rgs_mae": 0.1412}


def consensus(seed: int = 5) -> pd.DataFrame:
    """Six rats' images with consensus grades 0/1/2 (about 8% blank) and the derived binary label."""
    rng = np.random.RandomState(seed)
    rows = []
    for rat, n in zip(RATS, SIZES):
        level = rng.uniform(-0.5, 0.9)  # rats differ in how much pain they show
        for i in range(n):
            g = np.clip(np.round(level + rng.normal(0, 0.7, size=len(AUS))), 0, 2).astype(int)
            g[rng.uniform(size=len(AUS)) < 0.08] = BLANK
            rows.append((f"{rat}_{i:03d}.png", rat, *g))
    t = pd.DataFrame(rows, columns=["image", "subject", *AUS])
    t["y_true"] = derived_label(t[list(AUS)].to_numpy())
    return t


def au_frame(truth: pd.DataFrame, noise: float, seed: int) -> pd.DataFrame:
    """A predictions frame of the au task: predicted grades = consensus + noise (per-rat bias), the derived label."""
    rng = np.random.RandomState(seed)
    g = truth[list(AUS)].to_numpy()
    filled = np.where(g == BLANK, rng.randint(0, 3, size=g.shape), g)
    bias = truth["subject"].map({r: rng.normal(0, noise / 2) for r in RATS}).to_numpy()[:, None]
    pred = np.clip(np.round(filled + bias + rng.normal(0, noise, size=g.shape)), 0, 2).astype(int)
    y_pred = derived_label(pred)
    f = pd.DataFrame({"image": truth["image"], "subject": truth["subject"], "y_true": truth["y_true"], "y_pred": y_pred,
                      "score": np.where(y_pred == 1, 0.8, 0.2), "fold": truth["subject"]})
    for j, a in enumerate(AUS):
        f[f"y_true_au_{a}"] = pd.array(np.where(g[:, j] == BLANK, None, g[:, j]), dtype="Int64")
        f[f"y_pred_au_{a}"] = pred[:, j]
    return f


def record(method: str, frame: pd.DataFrame | None, *, task: str = "au", fingerprint: str = "fp-au", seed: int = 0,
           config: str = "h", status: str = "complete", metrics: dict | None = None, start: int = 0) -> RunRecord:
    return RunRecord(run_id=f"{method}-{seed}-{config}-{task}", experiment_id="1", dataset="toy", fingerprint=fingerprint,
                     method=method, family="x", seed=str(seed), profile="quick", config_hash=config, source="built-in",
                     status=status, folds_expected=len(RATS), hardware="cpu", start_time=start,
                     metrics=dict(metrics or {}), folds=tuple(FoldRecord(f"f{i}", r, "complete") for i, r in enumerate(RATS)),
                     predictions=frame, task=task)


def lookup(method, profile):
    return "h"


NOISES = {"m-a": 0.35, "m-b": 0.4, "m-c": 0.55, "m-d": 0.6, "m-e": 0.8, "m-f": 1.0, "m-g": 1.1, "m-h": 1.6}


def golden_frames() -> dict[str, pd.DataFrame]:
    truth = consensus()
    return {m: au_frame(truth, noise, seed=100 + i) for i, (m, noise) in enumerate(NOISES.items())}


@pytest.fixture(scope="module")
def frames():
    return golden_frames()


@pytest.fixture(scope="module")
def board(frames):
    records = [record(m, f, metrics=CEILING) for m, f in frames.items()]
    records.append(record("m-a", frames["m-c"], config="variant"))  # exploratory
    records.append(record("m-broken", frames["m-a"], status="failed"))  # incomplete
    return build_leaderboards(records, "sqlite:////x/mlflow.db", lookup=lookup)[0]


# ---------------------------------------------------------------- grouping


def test_binary_and_au_boards_are_separate(frames):
    binary = frames["m-a"][["image", "subject", "y_true", "y_pred", "score", "fold"]]
    plain = [record("b-1", binary, task="binary", fingerprint="fp-bin"), record("b-2", frames["m-c"][binary.columns], task="binary",
                                                                              fingerprint="fp-bin")]
    only_binary = build_leaderboards(plain, "", lookup=lookup)
    boards = build_leaderboards(plain + [record("m-a", frames["m-a"]), record("m-c", frames["m-c"])], "", lookup=lookup)
    assert [(b.dataset, b.task, b.name) for b in boards] == [("toy", "binary", "toy"), ("toy", "au", "toy-au")]
    assert boards[0] == only_binary[0]  # the binary board is the one it was without au runs
    assert [r.method for r in boards[0].ranked] == ["b-1", "b-2"] and all(not r.au for r in boards[0].rows)
    assert {r.method for r in boards[1].ranked} == {"m-a", "m-c"} and all(r.au for r in boards[1].ranked)
    assert boards[1].baselines == () and boards[1].reference == ()
    # two fingerprints within the au task still split that task's board
    two = build_leaderboards([record("m-a", frames["m-a"]), record("m-a", frames["m-a"], fingerprint="other")], "", lookup=lookup)
    assert [(b.dataset, b.name) for b in two] == [("toy@fp-au", "toy@fp-au-au"), ("toy@other", "toy@other-au")]


def test_au_run_without_au_columns_is_incomplete(frames):
    lb = build_leaderboards([record("m-a", frames["m-a"]), record("m-b", frames["m-b"].drop(columns=["y_pred_au_ears"]))],
                            "", lookup=lookup)[0]
    assert [r.method for r in lb.ranked] == ["m-a"]
    assert "predictions lack y_pred_au_ears" in lb.incomplete[0].reasons[0]


# ---------------------------------------------------------------- figures of a row


def test_au_columns_equal_score_au(board, frames):
    for row in board.ranked:
        s = metrics_au.score_au(frames[row.method])
        assert row.au["rgs"]["icc_a1"] == pytest.approx(s["rgs"]["icc_a1"], abs=1e-12)
        assert row.au["rgs"]["mae"] == pytest.approx(s["rgs"]["mae"], abs=1e-12)
        assert row.au["rgs_std"]["icc_a1"] is None  # one seed
        for a in AUS:
            assert row.au["qwk"][a] == pytest.approx(s["au"][a]["qwk"], abs=1e-12)
            assert np.sum(row.au["confusion"][a]) == s["au"][a]["n"]
        # the ICC of the sums over all rats (each drawn once) is the pooled ICC
        sums = au.rat_sums(frames[row.method], board.subjects)
        assert float(stats.icc_from_sums(sums.sum(axis=0))) == pytest.approx(s["rgs"]["icc_a1"], abs=1e-10)
        lo, hi = row.au["icc_ci"]
        assert lo <= row.au["rgs"]["icc_a1"] <= hi


def test_seeds_are_averaged(frames):
    truth = consensus()
    second = au_frame(truth, 0.5, seed=999)
    lb = build_leaderboards([record("m-a", frames["m-a"]), record("m-a", second, seed=1)], "", lookup=lookup)[0]
    row = lb.ranked[0]
    each = [metrics_au.score_au(f)["rgs"]["icc_a1"] for f in (frames["m-a"], second)]
    assert row.seeds == ("0", "1")
    assert row.au["rgs"]["icc_a1"] == pytest.approx(np.mean(each)) and row.au["rgs_std"]["icc_a1"] == pytest.approx(np.std(each, ddof=1))


def test_resampled_icc_equals_icc_a1_on_replicated_rows(frames):
    frame = frames["m-e"]
    sums = au.rat_sums(frame, RATS)
    r = stats.exact_resamples(len(RATS))
    vectorised = stats.resampled_icc(sums, r)
    pred, truth = au.scores(frame)
    subject = frame["subject"].to_numpy()
    for b in list(range(0, len(r.counts), 23)) + [len(r.counts) - 1]:
        idx = np.concatenate([np.flatnonzero(subject == s) for s, c in zip(RATS, r.counts[b]) for _ in range(c)])
        ok = ~np.isnan(truth[idx])
        ref = metrics_au.icc_a1(np.column_stack([pred[idx][ok], truth[idx][ok]]))
        assert vectorised[b] == pytest.approx(ref, abs=1e-10), r.counts[b]
    # undefined like icc_a1: one row, or every value equal
    assert np.isnan(stats.icc_from_sums(stats.icc_sums([1.0], [1.0])))
    assert np.isnan(stats.icc_from_sums(stats.icc_sums([1.0, 1.0, 1.0], [1.0, 1.0, 1.0])))
    assert metrics_au.icc_a1([[1, 1], [1, 1], [1, 1]]) is None


# ---------------------------------------------------------------- ranking and tiers


def _reference_tiers(frames: dict, alpha: float = 0.05) -> list[dict]:
    """Slow reference: rows ordered by pooled ICC(A,1); every exact resample's ICC from its replicated rows
    with `metrics_au.icc_a1`; paired two-sided p; Holm; the contiguous tier walk."""
    r = stats.exact_resamples(len(RATS))
    order = sorted(frames, key=lambda m: -metrics_au.score_au(frames[m])["rgs"]["icc_a1"])
    per = {}
    for m in order:
        pred, truth = au.scores(frames[m])
        subject = frames[m]["subject"].to_numpy()
        vals = []
        for counts in r.counts:
            idx = np.concatenate([np.flatnonzero(subject == s) for s, c in zip(RATS, counts) for _ in range(c)])
            ok = ~np.isnan(truth[idx])
            v = metrics_au.icc_a1(np.column_stack([pred[idx][ok], truth[idx][ok]]))
            vals.append(np.nan if v is None else v)
        per[m] = np.array(vals)

    def p_of(a, b):
        d = per[a] - per[b]
        ok = ~np.isnan(d)
        w = r.weights[ok] / r.weights[ok].sum()
        return min(1.0, 2 * min(w[d[ok] <= 1e-12].sum(), w[d[ok] >= -1e-12].sum()))

    out, remaining, tier = {}, list(order), 0
    while remaining:
        tier += 1
        best, others = remaining[0], remaining[1:]
        out[best] = (tier, None, None)
        raw = [p_of(best, o) for o in others]
        adjusted = stats.holm(raw)
        k = 0
        while k < len(others) and adjusted[k] >= alpha:
            out[others[k]] = (tier, raw[k], adjusted[k])
            k += 1
        remaining = others[k:]
    return [{"method": m, "rgs_icc_a1": round(metrics_au.score_au(frames[m])["rgs"]["icc_a1"], 6), "tier": out[m][0],
             "p_raw": None if out[m][1] is None else round(out[m][1], 8),
             "p_holm": None if out[m][2] is None else round(out[m][2], 8)} for m in order]


def write_golden() -> None:
    GOLDEN.write_text(json.dumps(_reference_tiers(golden_frames()), indent=1) + "\n", encoding="utf-8")


def test_tiers_au_golden(board, frames):
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert len({g["tier"] for g in golden}) > 1 and len({g["tier"] for g in golden}) < len(golden)  # some rows separate, not all
    # the vectorised tiers on the per-rat sums
    order = [g["method"] for g in golden]
    found = stats.tiers([au.rat_sums(frames[m], RATS) for m in order], stats.exact_resamples(6), 0.05, stats.resampled_icc)
    assert [(t.tier, t.p_raw, t.p_holm) for t in found] == [
        (g["tier"], pytest.approx(g["p_raw"], abs=1e-8) if g["p_raw"] is not None else None,
         pytest.approx(g["p_holm"], abs=1e-8) if g["p_holm"] is not None else None) for g in golden]
    # and on the board: ranked by pooled ICC(A,1), the same tiers
    assert [(r.method, r.rank, r.tier) for r in board.ranked] == [(g["method"], i + 1, g["tier"]) for i, g in enumerate(golden)]
    for r, g in zip(board.ranked, golden):
        assert r.au["rgs"]["icc_a1"] == pytest.approx(g["rgs_icc_a1"], abs=1e-6)
        assert (r.tier_p is None) == (g["p_holm"] is None)


def test_equal_icc_is_ordered_by_derived_f1(frames):
    # the same AU grades, one with its derived labels made worse: same ICC, lower pooled F1
    worse = frames["m-b"].assign(y_pred=1 - frames["m-b"]["y_pred"])
    lb = build_leaderboards([record("zz", frames["m-b"]), record("aa", worse)], "", lookup=lookup)[0]
    assert lb.ranked[0].au["rgs"]["icc_a1"] == lb.ranked[1].au["rgs"]["icc_a1"]
    assert [(r.method, r.rank) for r in lb.ranked] == [("zz", 1), ("aa", 2)]


# ---------------------------------------------------------------- the human ceiling


def test_ceiling_row_from_metrics_never_ranked(board, frames):
    c = board.ceiling
    assert c["au"]["orbital"] == {"alpha": 0.74, "qwk": 0.81, "accuracy": 0.86} and c["rgs"]["icc_a1"] == 0.8731
    assert all(r.label != au.CEILING_LABEL for r in board.rows)  # a reference, not a row that could be ranked
    md = render_markdown(board)
    line = next(line for line in md.splitlines() if au.CEILING_LABEL in line and line.startswith("|"))
    assert line.startswith("| reference ") and "0.8100 (α 0.7400)" in line and "0.8731" in line
    assert "part of the consensus" in md
    data = results_json([board])["leaderboards"][0]
    assert data["human_ceiling"]["rgs"]["icc_a1"] == 0.8731
    csv = pd.read_csv(pd.io.common.StringIO(results_csv([board])), dtype=str, keep_default_na=False)
    ceiling = csv[csv["kind"] == "human-ceiling"]
    assert ceiling["rank"].tolist() == [""] and ceiling["au_ears_alpha"].tolist() == ["0.700000"]
    # no ceiling metrics: no ceiling row
    plain = build_leaderboards([record("m-a", frames["m-a"])], "", lookup=lookup)[0]
    assert plain.ceiling is None and au.CEILING_LABEL not in render_markdown(plain).split("## Results")[1].split("- ")[0]


# ---------------------------------------------------------------- rendering and export


def test_markdown_has_the_au_table(board):
    md = render_markdown(board)
    assert md.startswith("# Leaderboard: toy — action units (au task)")
    header = next(line for line in md.splitlines() if line.startswith("| Rank"))
    cols = [c.strip() for c in header.split("|")[1:-1]]
    assert cols[:11] == ["Rank", "Tier", "Method", "QWK orbital", "QWK nose", "QWK ears", "QWK whiskers", "RGS ICC(A,1)",
                         "ICC 95% CI", "RGS MAE", "Derived F1/Acc (pooled)"]
    top = board.ranked[0]
    line = next(line for line in md.splitlines() if line.startswith("| 1 ") and f" {top.label} " in line)
    assert f"{top.au['rgs']['icc_a1']:.4f}" in line and f"[{top.au['icc_ci'][0]:.4f}, {top.au['icc_ci'][1]:.4f}]" in line
    assert "paired bootstrap over whole rats of the ICC(A,1) difference" in md and "Holm-corrected" in md
    assert "## Exploratory configurations (not ranked)" in md and "## Incomplete (not ranked)" in md
    assert "Table 3 (not reproduced" not in md and "majority class (baseline)" not in md


def test_html_has_the_au_table_and_figures(board):
    html = render_html(board)
    assert "<h1>Leaderboard: toy — action units (au task)</h1>" in html and "Ranked by pooled RGS ICC(A,1)" in html
    assert 'id="au-results-table" class="sortable"' in html and 'id="exploratory-table"' in html
    assert re.search(r'<tr class="baseline reference"><td[^>]*>reference</td><td class="text">raters \(human ceiling, not ranked\)', html)
    assert "Per-AU confusion matrices" in html and "Bland–Altman plot of the RGS score" in html
    assert html.count("data:image/png;base64,") == 3  # class balance, AU confusion matrices, Bland–Altman
    assert "F1 per held-out rat" not in html
    table = html.split('id="au-results-table"')[1].split("</table>")[0]
    assert table.count("<tr") == 1 + len(board.main_rows) + 1  # header, ranked rows, the ceiling


CHROMIUM = next((c for c in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(c).exists()), None)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (/usr/bin/chromium)")
def test_au_page_in_headless_chromium(board, tmp_path):
    """Real clicks on the au page: Method sorts by name, RGS ICC(A,1) by value (the ceiling row included)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_page", Path(__file__).parent / "browser" / "check_page.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    write_leaderboards([board], tmp_path / "page")
    result = check.check_page(tmp_path / "page" / "index.html", chromium=CHROMIUM, table="au-results-table", column="RGS ICC(A,1)")
    assert result["console_errors"] == [], result["console_errors"]
    assert result["rows"] == len(board.main_rows) + 1
    assert result["sorted_by_method"] and result["order_changed_by_click"]
    assert result["sorted_descending"] and result["sorted_ascending"]


def test_export_has_task_and_au_columns(board, tmp_path):
    data = results_json([board])
    lb = data["leaderboards"][0]
    assert lb["task"] == "au" and lb["name"] == "toy-au" and all(r["task"] == "au" for r in lb["rows"])
    top = lb["rows"][0]
    assert top["au"]["rgs"]["icc_a1"] == pytest.approx(board.ranked[0].au["rgs"]["icc_a1"], abs=1e-6)
    assert len(top["au"]["confusion"]["nose"]) == 3
    csv = pd.read_csv(pd.io.common.StringIO(results_csv([board])), dtype=str, keep_default_na=False)
    assert list(csv.columns[:3]) == ["dataset", "dataset_fingerprint", "task"] and set(csv["task"]) == {"au"}
    assert {"au_orbital_qwk", "rgs_icc_a1", "rgs_icc_a1_ci_low", "rgs_mae"} <= set(csv.columns)


def test_written_next_to_the_binary_board(board, frames, tmp_path):
    binary = frames["m-a"][["image", "subject", "y_true", "y_pred", "score", "fold"]]
    boards = build_leaderboards([record("b-1", binary, task="binary", fingerprint="fp-bin"), record("m-a", frames["m-a"])],
                                "", lookup=lookup)
    binary_csv = results_csv([boards[0]])
    assert "task" not in binary_csv.splitlines()[0].split(",")  # a binary-only CSV keeps its columns
    write_leaderboards(boards, tmp_path / "lb", with_figures=False)
    for sub in ("toy", "toy-au"):
        assert (tmp_path / "lb" / sub / "README.md").is_file()
    assert "[toy-au](toy-au/README.md)" in (tmp_path / "lb" / "README.md").read_text()
    combined = pd.read_csv(tmp_path / "lb" / "results.csv", dtype=str, keep_default_na=False)
    assert set(zip(combined["dataset"], combined["task"])) == {("toy", "binary"), ("toy", "au")}
    # the binary rows' own columns are what they are without the au board
    alone = pd.read_csv(pd.io.common.StringIO(binary_csv), dtype=str, keep_default_na=False)
    mine = combined[combined["task"] == "binary"].reset_index(drop=True)
    assert (mine[alone.columns] == alone).all().all()
