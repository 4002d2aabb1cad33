"""The two-stage AU labelling rule, the replica's simulated raters (Tables 1 and 2 without rendering)
and the data layer's rater columns."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ratspain_bench.cli import main
from ratspain_bench.data.check import check_dataset, rule_problems
from ratspain_bench.data.dataset import read_dataset
from ratspain_bench.data.imbalance import imbalance_report
from ratspain_bench.data.rat_face import look_for
from ratspain_bench.data.raters import (
    RATER_COLUMNS, RATER_IDS, accepted_grades, consensus, image_confidence, image_level, rater_column,
    settled_in_stage_one)
from ratspain_bench.data.synth import (
    FIELDS, LOW_LEVEL_PROBS, PAPER_COUNTS, draw_rated, generate_replica, low_confidence_counts, plan_rows)
from ratspain_bench.tasks import AUS, BLANK

PAPER = json.loads(Path("/work/shared/paper/ratspain_paper.json").read_text())
B = BLANK


# ---------------------------------------------------------------- the rule


@pytest.mark.parametrize("grades, expected", [
    ([1, 1, 1, 1, 0], 1),  # 4 of 5 agree: settled in stage one
    ([2, 2, 2, 2, 2], 2),
    ([1, 1, 1, 1, 0, 2, 2, 2], 1),  # settled: stage-two grades are not looked at
    ([0, 0, 0, 0, B], 0),  # an uncertain rater does not block 4 of 5
    ([1, 1, 1, 0, 2, 1, 1, 0], 1),  # 3 of 5, then 5 of 8
    ([1, 1, 1, 0, 2, 1, 0, 2], B),  # 3 of 5, then 4 of 8: not accepted
    ([1, 1, 1, B, B, 1, 1, B], 1),  # blanks in both stages, 5 of 8 still agree
    ([1, 1, 1, B, B, 1, B, B], B),
    ([1, 1, 1, 0, 0], B),  # unsettled and no stage two
    ([B, B, B, B, B, B, B, B], B),
])
def test_consensus(grades, expected):
    assert consensus(grades) == expected
    assert consensus(np.array(grades)) == expected


def test_settled_in_stage_one():
    assert settled_in_stage_one([0, 0, 0, 0, 1, 2, 2, 2])
    assert not settled_in_stage_one([0, 0, 0, 1, 1, 0, 0, 0])
    assert not settled_in_stage_one([2, 2, 2, B, B])


def test_image_confidence_and_level():
    assert image_confidence([1, 0, 1, B]) == "high" and image_level([1, 0, 1, B]) == 1  # three accepted AUs
    assert image_confidence([1, 0, 2, 2]) == "high" and image_level([1, 0, 2, 2]) == 1  # 1.25
    assert image_confidence([1, B, B, 0]) == "low" and image_level([1, B, B, 0]) == 1  # two: low; 0.5 -> 1
    assert image_level([0, 0, 1, 1]) == 1 and image_level([1, 2, 1, 2]) == 2  # half up, never to even
    assert image_level([0, 1, 0, 1]) == 1 and image_level([0, 0, 0, 1]) == 0
    assert image_confidence([B] * 4) == "low" and image_level([B] * 4) == B
    grades = np.array([[1, 1, 1, 1, 0, B, B, B], [0, 0, 2, 1, 2, 2, 2, 2], [2, 1, 0, B, B, 1, 0, 2], [0] * 8])
    assert accepted_grades(grades) == [1, 2, B, 0]


def test_rater_columns():
    assert rater_column(3, "nose") == "rater_3_au_nose"
    assert len(RATER_COLUMNS) == 32 and RATER_IDS == tuple(range(1, 9))
    assert set(RATER_COLUMNS) <= set(FIELDS)


# ---------------------------------------------------------------- the replica's labelling, planned without images


@pytest.fixture(scope="module")
def paper_rows():
    return plan_rows(seed=0)


def _grade(cell) -> int:
    return BLANK if cell == "" else int(cell)


def test_table1_exact(paper_rows):
    t1 = PAPER["table1_dataset"]
    assert len(paper_rows) == t1["total_images"] == 1295
    high = [r for r in paper_rows if r["confidence"] == "high"]
    assert Counter(r["level"] for r in high) == {0: t1["high_confidence"]["no_pain"], 1: t1["high_confidence"]["moderate"],
                                                 2: t1["high_confidence"]["severe"]}
    assert len(paper_rows) - len(high) == t1["low_confidence_unlabelled"] == 157


def test_table2_exact_and_low_confidence_spread(paper_rows):
    table2 = PAPER["table2_per_rat"]
    got = Counter((r["subject"], r["level"]) for r in paper_rows if r["confidence"] == "high")
    for s, c in table2.items():
        assert [got[(s, lv)] for lv in (0, 1, 2)] == [c["no_pain"], c["moderate"], c["severe"]]
    low = Counter(r["subject"] for r in paper_rows if r["confidence"] == "low")
    # largest remainder of 157 in proportion to the Table 2 totals (221, 210, 198, 230, 182, 97 of 1,138)
    assert low == {"1": 31, "2": 29, "3": 27, "4": 32, "5": 25, "6": 13}
    assert low_confidence_counts(PAPER_COUNTS, 157) == dict(low)
    for s, n in low.items():
        share = 157 * table2[s]["total"] / 1138
        assert int(share) <= n <= int(share) + 1


def test_rater_columns_follow_the_rule(paper_rows):
    n_stage_one = 0
    for r in paper_rows:
        assert list(r) == FIELDS
        accepted = []
        for a in AUS:
            grades = [_grade(r[rater_column(i, a)]) for i in RATER_IDS]
            assert all(g in (B, 0, 1, 2) for g in grades)
            if settled_in_stage_one(grades):
                n_stage_one += 1
                assert grades[5:] == [B, B, B]  # stage two not needed: no stage-two grades
            assert _grade(r[f"au_{a}"]) == consensus(grades)
            accepted.append(consensus(grades))
        assert r["confidence"] == image_confidence(accepted)
        if r["confidence"] == "high":
            assert _grade(r["level"]) == image_level(accepted) and r["label"] == int(r["level"] >= 1)
        else:  # unlabelled, as in the paper (Table 1: N/A)
            assert r["level"] == "" and r["label"] == ""
    assert n_stage_one / (4 * len(paper_rows)) > 0.6  # most AUs are settled in stage one


def test_raters_without_rejection_are_plausible():
    rng = np.random.default_rng(1)
    low, settled, n = 0, 0, 3000
    for i in range(n):
        _, _, grades = draw_rated(look_for(i % 6), rng.choice(3, p=LOW_LEVEL_PROBS), rng)
        low += image_confidence(accepted_grades(grades)) == "low"
        settled += sum(settled_in_stage_one(g) for g in grades)
    assert 0.10 <= low / n <= 0.15
    assert settled / (4 * n) > 0.6


def test_deterministic(paper_rows):
    assert plan_rows(seed=0) == paper_rows
    assert plan_rows(seed=1) != paper_rows


def test_low_confidence_for_custom_counts(tmp_path):
    counts = {"a": {"no_pain": 3, "moderate": 2}, "b": {"no_pain": 1, "moderate": 4, "severe": 1}}
    rows = plan_rows(seed=3, counts=counts)
    assert len(rows) == 11 and {r["confidence"] for r in rows} == {"high"}
    rows = plan_rows(seed=3, counts=counts, low_confidence=4)
    assert Counter((r["subject"], r["confidence"]) for r in rows) == {
        ("a", "high"): 5, ("b", "high"): 6, ("a", "low"): 2, ("b", "low"): 2}
    assert len(plan_rows(seed=0, counts=PAPER_COUNTS)) == 1295  # the paper's counts bring the paper's 157
    with pytest.raises(ValueError, match="low_confidence"):
        generate_replica(tmp_path / "o", size=32, counts=counts, low_confidence=-1)


def test_plan_through_the_reader_is_table1_and_consistent(paper_rows, tmp_path):
    m = tmp_path / "manifest.csv"
    with open(m, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(paper_rows)
    ds, problems = read_dataset(m)  # no images: only "image not found" errors
    assert {p.message.split(":")[0] for p in problems} == {"image not found"}
    assert len(ds) == 1138 and ds.n_low_confidence_excluded == 157
    assert rule_problems(ds.table) == []
    r = imbalance_report(ds)
    t1 = PAPER["table1_dataset"]
    assert r["confidence"] == {"high": 1138, "low": 157, "total": 1295,
                               "high_levels": {k: t1["high_confidence"][k] for k in ("no_pain", "moderate", "severe")}}
    assert {s: {k: c[k] for k in ("no_pain", "moderate", "severe", "total")} for s, c in r["subjects"].items()} \
        == PAPER["table2_per_rat"]
    labelled = [row for row in paper_rows if row["label"] != ""]
    assert len(labelled) == 1138  # the contract: the manifest's label counts are Table 2's
    included, _ = read_dataset(m, include_low_confidence=True)  # nothing to add: the low rows have no label
    assert len(included) == 1138 and included.n_low_confidence_excluded == 157
    assert imbalance_report(included)["confidence"]["total"] == 1295


# ---------------------------------------------------------------- the data layer


def _face(path: Path, k: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(k)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rng.random((6, 6, 3)) * 255).astype(np.uint8)).resize((48, 48), Image.BICUBIC).save(path)


def rated_dataset(root: Path, rows: list[str], raters=(1, 2, 3, 4, 5, 6, 7, 8)) -> Path:
    """A manifest whose rows are `subject,level,confidence,au_nose,<nose grades of the raters>`."""
    cols = ",".join(rater_column(i, "nose") for i in raters)
    lines = [f"path,subject,level,confidence,au_nose,{cols}"]
    for k, row in enumerate(rows):
        _face(root / f"images/{k}.png", k)
        lines.append(f"images/{k}.png,{row}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


GOOD = ["1,0,high,0,0,0,0,0,1,,,", "1,1,high,1,1,1,1,1,2,,,", "2,0,high,0,0,0,1,1,0,0,0,1", "2,1,high,,1,1,0,0,2,1,0,2"]


def test_rater_columns_in_the_table(tmp_path, capsys):
    root = rated_dataset(tmp_path / "ds", GOOD)
    ds, problems = read_dataset(root)
    assert problems == [] and check_dataset(root) == []
    raters = [rater_column(i, "nose") for i in RATER_IDS]
    assert list(ds.table.columns) == ["image", "subject", "level", "label", "confidence", "where", "au_nose", *raters, "file"]
    assert all(str(ds.table[c].dtype) == "Int64" for c in raters)
    assert ds.table[rater_column(6, "nose")].isna().tolist() == [True, True, False, False]
    assert ds.table[rater_column(8, "nose")].tolist()[2:] == [1, 2]
    assert main(["data", "check", "--data", str(root)]) == 0
    assert "0 error(s), 0 warning(s): usable" in capsys.readouterr().out


def test_bad_rater_grade_is_an_error(tmp_path, capsys):
    root = rated_dataset(tmp_path / "ds", [GOOD[0], "1,1,high,1,1,1,3,1,1,,,", *GOOD[2:]])
    m = root / "manifest.csv"
    errors = [f"{p.where}: {p.message}" for p in check_dataset(root) if p.severity == "error"]
    assert errors == [f"{m}:3: rater_3_au_nose must be 0, 1, 2 or blank, got '3'"]
    assert main(["data", "check", "--data", str(root)]) == 2
    assert f"error: {m}:3: rater_3_au_nose must be 0, 1, 2 or blank, got '3'" in capsys.readouterr().out.splitlines()


def test_au_contradicting_its_raters_is_a_warning(tmp_path, capsys):
    rows = [GOOD[0], "1,2,high,2,1,1,1,1,0,,,",  # raters settle 1 in stage one, au_nose (and level) say 2
            "2,0,high,0,0,0,1,1,0,0,0,1",
            "2,1,high,1,1,1,0,0,2,1,0,2"]  # 3 of 5, then 4 of 8: not accepted, au_nose says 1
    root = rated_dataset(tmp_path / "ds", rows)
    m = root / "manifest.csv"
    warnings = [f"{p.where}: {p.message}" for p in check_dataset(root) if p.severity == "warning"]
    assert warnings == [f"{m}:3: au_nose 2 contradicts its raters (the two-stage rule gives 1)",
                        f"{m}:5: au_nose 1 contradicts its raters (the two-stage rule gives blank)"]
    assert main(["data", "check", "--data", str(root)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("0 error(s), 2 warning(s): usable")


def test_level_not_the_rounded_mean_is_a_warning(tmp_path):
    root = tmp_path / "ds"
    lines = ["path,subject,level,au_orbital,au_nose,au_ears,au_whiskers"]
    for k, row in enumerate(["1,0,0,0,0,0", "1,1,0,0,1,1", "2,1,1,1,0,", "2,0,1,1,0,"]):
        _face(root / f"images/{k}.png", k)
        lines.append(f"images/{k}.png,{row}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    problems = check_dataset(root)
    assert [f"{p.severity}: {p.where}: {p.message}" for p in problems] == [
        f"warning: {root / 'manifest.csv'}:5: level 0 is not 1, the rounded mean of the accepted AU grades (orbital 1, nose 1, ears 0, whiskers blank)"]


def test_raters_without_au_columns_give_the_accepted_grades(tmp_path):
    root = tmp_path / "ds"
    cols = [rater_column(i, a) for a in ("orbital", "nose", "ears") for i in (1, 2, 3, 4, 5)]
    lines = ["path,subject,level," + ",".join(cols)]
    for k, (s, level, g) in enumerate([("1", 0, (0, 0, 0)), ("1", 1, (1, 1, 1)), ("2", 1, (1, 1, 0)), ("2", 0, (1, 1, 0))]):
        _face(root / f"images/{k}.png", k)
        lines.append(f"images/{k}.png,{s},{level}," + ",".join(str(v) for v in g for _ in range(5)))
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    assert [p.message for p in check_dataset(root)] == [
        "level 0 is not 1, the rounded mean of the accepted AU grades (orbital 1, nose 1, ears 0, whiskers blank)"]


def test_blank_level_only_on_a_low_row(tmp_path, capsys):
    rows = [*GOOD, "1,,low,,1,1,0,0,2,1,0,2", "2,,high,1,1,1,1,1,1,,,"]
    root = rated_dataset(tmp_path / "ds", rows)
    m = root / "manifest.csv"
    errors = [f"{p.where}: {p.message}" for p in check_dataset(root) if p.severity == "error"]
    assert errors == [f"{m}:7: no level and no label"]
    root = rated_dataset(tmp_path / "ok", rows[:5])
    ds, problems = read_dataset(root)
    assert problems == [] and len(ds) == 4 and ds.n_low_confidence_excluded == 1
    ds, problems = read_dataset(root, include_low_confidence=True)  # nothing can use an unlabelled row
    assert problems == [] and len(ds) == 4 and ds.n_low_confidence_excluded == 1
    assert main(["data", "check", "--data", str(root)]) == 0
    assert "4 images, 1 low-confidence excluded" in capsys.readouterr().out
    assert main(["data", "imbalance", "--data", str(root), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["confidence"] == {
        "high": 4, "low": 1, "total": 5, "high_levels": {"no_pain": 2, "moderate": 2, "severe": 0}}


def test_rater_ids_are_any_names_in_column_order(tmp_path):
    """Real data names its raters as it likes (`rater_<id>_au_<name>`): the first five in column order are stage one."""
    root = tmp_path / "ds"
    root.mkdir()
    names = ["ann", "bo", "cy", "di", "ed", "fay", "gus", "hal"]
    lines = ["path,subject,level,au_nose," + ",".join(f"rater_{n}_au_nose" for n in names)]
    rows = ["1,1,1,1,1,1,1,0,,,", "1,1,1,1,1,0,0,2,1,1,1",  # 4 of 5 agree on 1; 2 of 5, then 5 of 8
            "2,0,0,0,0,0,0,1,,,", "2,2,2,1,1,1,1,2,,,"]  # stage one settles 1, au_nose says 2
    for k, row in enumerate(rows):
        _face(root / f"{k}.png", k)
        lines.append(f"{k}.png,{row}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    ds, problems = read_dataset(root)
    assert [c for c in ds.table.columns if c.startswith("rater_")] == [f"rater_{n}_au_nose" for n in names]
    warnings = [p.message for p in check_dataset(root) if p.severity == "warning" and "rater" in p.message]
    assert warnings == ["au_nose 2 contradicts its raters (the two-stage rule gives 1)"]
