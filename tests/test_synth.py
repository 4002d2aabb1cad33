"""The synthetic replica: counts, labelling rule, determinism, AU boxes, pose bins, atomic output.
(The raters and Tables 1 and 2 on the default seed: test_raters.py, without rendering.)"""
import csv
import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from ratspain_bench.data import synth
from ratspain_bench.data.synth import FIELDS, PAPER_COUNTS, generate_replica, plan_rows, pose_bin
from ratspain_bench.tasks import round_half_up

COUNTS = {
    "a": {"no_pain": 4, "moderate": 3, "severe": 1},
    "b": {"no_pain": 2, "moderate": 4, "severe": 0},
    "c": {"no_pain": 3, "moderate": 1, "severe": 2},
}
SIZE = 64
AUS = ("orbital", "nose", "ears", "whiskers")


def read(root: Path):
    with open(root / "manifest.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return rows, json.loads((root / "au_regions.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "replica"
    seen = []
    manifest = generate_replica(root, seed=7, size=SIZE, counts=COUNTS, jobs=1,
                                progress=lambda done, total: seen.append((done, total)))
    assert manifest == root / "manifest.csv"
    assert seen[-1] == (20, 20)
    return root


def test_paper_counts_are_table2():
    assert sorted(PAPER_COUNTS) == ["1", "2", "3", "4", "5", "6"]
    tot = Counter()
    for c in PAPER_COUNTS.values():
        tot.update(c)
    assert tot == {"no_pain": 541, "moderate": 591, "severe": 6}


def test_exact_counts_per_subject(replica):
    rows, _ = read(replica)
    got = Counter((r["subject"], int(r["level"])) for r in rows)
    for s, c in COUNTS.items():
        for lv, key in enumerate(("no_pain", "moderate", "severe")):
            assert got[(s, lv)] == c[key]
    assert all(r["label"] == str(int(int(r["level"]) >= 1)) and r["confidence"] == "high" for r in rows)


def test_level_is_rounded_mean_of_accepted_au_scores(replica):
    rows, _ = read(replica)
    for r in rows:
        scores = [int(r[f"au_{k}"]) for k in AUS if r[f"au_{k}"] != ""]
        assert len(scores) >= 3 and all(s in (0, 1, 2) for s in scores)
        assert round_half_up(sum(scores) / len(scores)) == int(r["level"]), r


def test_manifest_is_the_plan(replica):
    with open(replica / "manifest.csv", encoding="utf-8", newline="") as f:
        assert next(csv.reader(f)) == FIELDS
    rows, _ = read(replica)
    assert rows == [{k: str(v) for k, v in r.items()} for r in plan_rows(seed=7, counts=COUNTS)]


def test_round_half_up():
    assert [round_half_up(x) for x in (0, 0.25, 0.5, 0.75, 1.25, 1.5, 2)] == [0, 0, 1, 1, 1, 2, 2]


def test_pose_bins(replica):
    rows, _ = read(replica)
    for r in rows:
        yaw = float(r["pose_yaw"])
        assert r["pose_bin"] == pose_bin(yaw)
        assert r["pose_bin"] == ("frontal" if abs(yaw) < 15 else "moderate" if abs(yaw) < 40 else "extreme")
        for k in ("pose_yaw", "pose_pitch", "pose_roll"):
            assert r[k] == str(round(float(r[k]), 1))


def test_images_decode_at_size(replica):
    rows, _ = read(replica)
    for r in rows:
        assert r["path"] == f"images/{r['subject']}/{Path(r['path']).name}"
        with Image.open(replica / r["path"]) as im:
            assert im.format == "JPEG" and im.size == (SIZE, SIZE) and im.mode == "RGB"


def test_au_regions(replica):
    rows, regions = read(replica)
    assert set(regions) == {r["path"] for r in rows}
    for r in rows:
        boxes = regions[r["path"]]
        assert set(boxes) == set(AUS)
        for key, lst in boxes.items():
            assert isinstance(lst, list)
            for b in lst:
                x0, y0, x1, y1 = b
                assert all(isinstance(v, int) for v in b)
                assert 0 <= x0 < x1 <= SIZE and 0 <= y0 < y1 <= SIZE, (r["path"], key, b)
        assert boxes["nose"] and boxes["ears"]
        if r["pose_bin"] == "frontal":
            assert len(boxes["orbital"]) == 2


def test_deterministic_and_independent_of_jobs(replica, tmp_path):
    again = tmp_path / "again"
    generate_replica(again, seed=7, size=SIZE, counts=COUNTS, jobs=2)
    assert (again / "manifest.csv").read_bytes() == (replica / "manifest.csv").read_bytes()
    assert (again / "au_regions.json").read_bytes() == (replica / "au_regions.json").read_bytes()
    rows, _ = read(replica)
    for r in rows:
        assert (again / r["path"]).read_bytes() == (replica / r["path"]).read_bytes()

    other = tmp_path / "other"
    generate_replica(other, seed=8, size=SIZE, counts=COUNTS, jobs=1)
    assert (other / "manifest.csv").read_bytes() != (replica / "manifest.csv").read_bytes()
    assert sum((other / r["path"]).read_bytes() != (replica / r["path"]).read_bytes() for r in rows) == len(rows)


def test_refuses_non_empty_out_dir(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError):
        generate_replica(tmp_path / "x", size=SIZE, counts={"a": {"no_pain": 1}})
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"
    generate_replica(tmp_path / "empty", size=SIZE, counts={"a": {"no_pain": 1, "moderate": 1}})
    (tmp_path / "empty2").mkdir()
    generate_replica(tmp_path / "empty2", size=SIZE, counts={"a": {"no_pain": 1}})
    assert (tmp_path / "empty2" / "manifest.csv").is_file()


def test_bad_counts_rejected(tmp_path):
    with pytest.raises(ValueError):
        generate_replica(tmp_path / "o", size=SIZE, counts={"a/b": {"no_pain": 1}})
    with pytest.raises(ValueError):
        generate_replica(tmp_path / "o", size=SIZE, counts={"a": {"mild": 1}})
    assert not (tmp_path / "o").exists()


def test_nothing_half_written(tmp_path, monkeypatch):
    calls = []
    real = synth.render_one

    def failing(job):
        calls.append(job)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real(job)

    monkeypatch.setattr(synth, "render_one", failing)
    with pytest.raises(RuntimeError):
        generate_replica(tmp_path / "out", size=SIZE, counts=COUNTS, jobs=1)
    assert list(tmp_path.iterdir()) == []


def test_cli_counts_as_long_json_or_a_file(tmp_path):
    """--per-subject-counts takes JSON of any length (a long one once crashed as a file name) or a file holding it."""
    from ratspain_bench.cli.synth import parse_counts
    from ratspain_bench.errors import InputError

    many = {f"rat{i:03d}": {"no_pain": 1, "moderate": 1} for i in range(40)}  # > 255 characters: too long for a file name
    assert parse_counts(json.dumps(many)) == many
    (tmp_path / "c.json").write_text(json.dumps(COUNTS))
    assert parse_counts(str(tmp_path / "c.json")) == COUNTS
    with pytest.raises(InputError, match="no such file"):
        parse_counts(str(tmp_path / "missing.json"))
