"""Protocols (issue 32): their folds against hand-built tables, their refusals, their results kept apart from LORO's,
and the pose-shift protocol measuring what it claims to on faces drawn by the replica's renderer."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import ratspain_bench as rb
from ratspain_bench.errors import InputError
from ratspain_bench.protocols import get_protocol, protocols

#    image  rat  site  pose      label
TABLE = pd.DataFrame([
    ("a0", "a", "s1", "frontal", 0), ("a1", "a", "s1", "extreme", 1), ("a2", "a", "s1", "frontal", 1),
    ("b0", "b", "s1", "moderate", 0), ("b1", "b", "s1", "frontal", 1), ("b2", "b", "s1", "frontal", 0),
    ("c0", "c", "s2", "frontal", 1), ("c1", "c", "s2", "extreme", 0), ("c2", "c", "s2", "frontal", 0),
], columns=["image", "subject", "site", "pose_bin", "label"])


def _sets(folds) -> dict[str, tuple[set, set]]:
    img = TABLE["image"].to_numpy()
    return {f.subject: (set(img[f.train]), set(img[f.test])) for f in folds}


def test_every_protocol_is_registered_by_its_file():
    assert set(protocols()) == {"loro", "pose-shift", "leave-one-group-out"}
    assert get_protocol().id == "loro" and get_protocol("leave-one-group-out:site").id == "leave-one-group-out:site"


def test_the_protocols_command_lists_what_run_takes(capsys):
    import json

    from ratspain_bench.cli import main

    assert main(["protocols", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["protocols"]
    assert [r["usage"] for r in rows] == ["leave-one-group-out:COLUMN", "loro", "pose-shift[:BINS]"]
    assert all("?" in r["question"] for r in rows)
    assert rb.list_protocols() == rows


def test_loro_folds():
    assert _sets(get_protocol("loro").plan(TABLE)) == {
        "a": ({"b0", "b1", "b2", "c0", "c1", "c2"}, {"a0", "a1", "a2"}),
        "b": ({"a0", "a1", "a2", "c0", "c1", "c2"}, {"b0", "b1", "b2"}),
        "c": ({"a0", "a1", "a2", "b0", "b1", "b2"}, {"c0", "c1", "c2"})}


def test_pose_shift_trains_on_frontal_faces_and_tests_every_pose():
    assert _sets(get_protocol("pose-shift").plan(TABLE)) == {
        "a": ({"b1", "b2", "c0", "c2"}, {"a0", "a1", "a2"}),
        "b": ({"a0", "a2", "c0", "c2"}, {"b0", "b1", "b2"}),
        "c": ({"a0", "a2", "b1", "b2"}, {"c0", "c1", "c2"})}
    two = _sets(get_protocol("pose-shift:frontal+moderate").plan(TABLE))
    assert two["a"][0] == {"b0", "b1", "b2", "c0", "c2"}


def test_leave_one_site_out_never_puts_a_site_in_both_halves():
    folds = _sets(get_protocol("leave-one-group-out:site").plan(TABLE))
    assert folds == {"s1": ({"c0", "c1", "c2"}, {"a0", "a1", "a2", "b0", "b1", "b2"}),
                     "s2": ({"a0", "a1", "a2", "b0", "b1", "b2"}, {"c0", "c1", "c2"})}
    site = dict(zip(TABLE["image"], TABLE["site"]))
    for train, test in folds.values():
        assert not {site[i] for i in train} & {site[i] for i in test}
    assert _sets(get_protocol("leave-one-group-out:subject").plan(TABLE)) == _sets(get_protocol("loro").plan(TABLE))


@pytest.mark.parametrize("name,table,message", [
    ("leave-one-group-out:site", TABLE.assign(site="s1"), "protocol leave-one-group-out:site: column 'site' has 1 value (s1: 9); it needs 2 or more"),
    ("leave-one-group-out:camera", TABLE, "protocol leave-one-group-out:camera: the manifest has no column 'camera'"),
    ("leave-one-group-out", TABLE, "protocol leave-one-group-out needs a column"),
    ("pose-shift", TABLE.assign(label=np.where(TABLE["pose_bin"] == "frontal", TABLE["subject"].map({"a": 1, "b": 1, "c": 0}), 0)),
     "protocol pose-shift: fold c trains on one class only (label in its training set: 1: 4); every fold needs both"),
    ("pose-shift:sideways", TABLE, "protocol pose-shift:sideways: unknown pose bin sideways; bins: frontal, moderate, extreme"),
    ("pose-shift", TABLE.drop(columns="pose_bin"), "protocol pose-shift: the manifest has no column 'pose_bin'"),
    ("loro:x", TABLE, "protocol loro takes no argument (given 'x')"),
    ("leave-one-rat", TABLE, "protocol 'leave-one-rat': expected one of"),
])
def test_refusals_name_the_column_and_its_counts(name, table, message):
    with pytest.raises(InputError) as e:
        get_protocol(name).plan(table)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_inner_folds_of_a_protocol_stay_inside_the_outer_training_rows():
    p = get_protocol("leave-one-group-out:subject")
    outer = p.plan(TABLE)[0]
    inner = p.inner(TABLE, outer)
    assert [f.subject for f in inner] == ["b", "c"]
    assert all(not (set(f.train_idx) | set(f.test_idx)) & set(outer.test_idx) for f in inner)


# ---------------------------------------------------------------- runs: kept apart, identical for loro


def test_results_of_two_protocols_never_mix_and_loro_keeps_its_paths(tmp_path):
    from ratspain_bench.evaluation.identity import JobKey

    data = rb.synth(tmp_path / "d", size=48, counts={r: {"no_pain": 6, "moderate": 6} for r in ("1", "2", "3")}, jobs=1)
    loro = rb.run(["lbp-r1p8-8x8"], data=data, runs_dir=tmp_path / "runs")
    shifted = rb.run(["lbp-r1p8-8x8"], data=data, runs_dir=tmp_path / "runs", protocol="pose-shift")
    a, b = loro.results[0], shifted.results[0]
    assert a.status == b.status == "complete" and not b.skipped  # pose-shift was computed, not read back from loro's
    key = JobKey("d", "fp", "m", "c", "h", 0)
    assert key.predictions_path("R").name == "m__c-h__seed0.csv"  # loro's file names, as before protocols
    assert "pose-shift-v1" in b.predictions.name and "pose-shift" not in a.predictions.name
    assert "pose_bin" in pd.read_csv(b.predictions).columns and "pose_bin" not in pd.read_csv(a.predictions).columns

    boards = rb.leaderboard(tmp_path / "board", runs_dir=tmp_path / "runs")
    (row,) = [r for r in boards[0].rows if r.method == "lbp-r1p8-8x8"]
    assert row.pooled["f1"] == pytest.approx(a.score["pooled"]["f1"])  # the main board: loro only
    text = (tmp_path / "board" / "robustness.md").read_text()
    assert "[robustness.md](robustness.md)" in (tmp_path / "board" / "README.md").read_text()
    assert f"{a.score['pooled']['f1']:.3f}" in text and "drop frontal → extreme" in text


def test_run_refuses_a_protocol_the_data_cannot_hold_before_any_work(tmp_path):
    data = rb.synth(tmp_path / "d", size=32, counts={r: {"no_pain": 2, "moderate": 2} for r in ("1", "2")}, jobs=1)
    with pytest.raises(InputError, match="column 'site'"):
        rb.run(["lbp-r1p8-8x8"], data=data, runs_dir=tmp_path / "runs", protocol="leave-one-group-out:site")
    assert not (tmp_path / "runs" / "jobs").exists()


# ---------------------------------------------------------------- what pose-shift measures

BRIGHTNESS = '''"""Reads one cue that a turn of the head does not change: the exposure of the whole picture."""
from dataclasses import dataclass

import numpy as np

from ratspain_bench.methods import Method, Predictions


@dataclass(frozen=True)
class BrightnessConfig:
    image_size: int = 32


class Brightness(Method):
    Config = BrightnessConfig
    family = "brightness"

    def fit(self, train):
        g, y = np.asarray(train.images, float).mean(axis=(1, 2, 3)), np.asarray(train.labels)
        self.cut, self.up = (g[y == 1].mean() + g[y == 0].mean()) / 2, g[y == 1].mean() > g[y == 0].mean()

    def predict(self, test):
        labels = ((np.asarray(test.images, float).mean(axis=(1, 2, 3)) > self.cut) == self.up).astype(int)
        return Predictions(labels, labels.astype(float))
'''


def _faces(root, hide_when_turned: bool):
    """Four rats' faces drawn by the replica's renderer at chosen poses (3 frontal, 2 moderate, 3 extreme of every 8):
    pain shows as every action unit at full intensity and a brighter exposure (a cue no pose changes), no pain as
    neither. With `hide_when_turned` a face seen from the side shows no cue at all."""
    from ratspain_bench.data.rat_face import draw_face, look_for
    from ratspain_bench.data.synth import AUS, pose_bin

    rows = []
    (root / "images").mkdir(parents=True)
    for s in range(4):
        look = look_for(s)
        rng = np.random.default_rng(s)
        for yaw in [0.0, 8.0, -8.0, 30.0, -30.0, 60.0, -60.0, 70.0] * 5:
            label = int(rng.random() < 0.5)
            shown = bool(label) and not (hide_when_turned and pose_bin(yaw) != "frontal")
            data, _ = draw_face(look, {a: 2.0 * shown for a in AUS}, (yaw + rng.normal(0, 2), 0.0, 0.0), rng, 48, 90, 0.0, 1.0,
                                look.light * (1.3 if shown else 1.0))
            path = f"images/r{s}_{len(rows)}.jpg"
            (root / path).write_bytes(data)
            rows.append({"path": path, "subject": f"r{s}", "label": label, "level": 2 * label, "confidence": "high",
                         "pose_yaw": yaw, "pose_bin": pose_bin(yaw)})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


@pytest.mark.parametrize("hide", [False, True], ids=["cues-at-every-pose", "cues-hidden-when-turned"])
def test_pose_shift_shows_a_drop_only_where_the_cues_hide(tmp_path, monkeypatch, hide):
    import ratspain_bench.methods.registry as reg
    from ratspain_bench.board import robustness
    from ratspain_bench.evaluation.record import fetch_runs, tracking_uri

    folder = tmp_path / "subs" / "brightness"
    folder.mkdir(parents=True)
    (folder / "method.py").write_text(BRIGHTNESS)
    (folder / "submission.toml").write_text('kind = "method"\nname = "brightness"\ndescription = "exposure"\nauthors = ["T"]\n'
                                            'contact = "t@example.org"\npaper = "unpublished"\nlicence = "MIT"\n'
                                            'entry_point = "method:Brightness"\n')
    monkeypatch.setenv("RATSPAIN_SUBMISSIONS_DIR", str(tmp_path / "subs"))
    monkeypatch.setattr(reg, "_default", [])
    data = _faces(tmp_path / "faces", hide)
    run = rb.run(["brightness"], data=data, runs_dir=tmp_path / "runs", protocol="pose-shift", sandbox="none")
    assert run.results[0].status == "complete", run.results[0].error
    (board,) = robustness.build(fetch_runs(tracking_uri(tmp_path / "runs")))
    row = board.rows[0]
    if hide:  # frontal faces are read, turned ones are not: a drop whose interval excludes 0
        assert row.drop.low > 0 and row.bins["frontal"].value > 0.6, row  # measured: +0.458 [0.212, 0.806]
    else:  # the cue survives the turn: no drop beyond the uncertainty of four rats
        assert row.drop.low <= 0 <= row.drop.high and min(c.value for c in row.bins.values()) > 0.6, row  # +0.062 [-0.044, 0.298]


# ---------------------------------------------------------------- sites in the replica


def test_a_replica_of_two_sites(tmp_path):
    """Rats shared round-robin between two labs: the first lab is the replica as it is, byte for byte (its rats'
    images equal the one-lab replica's); the second records the same rats' draws with its own camera, lighting,
    background, white balance and JPEG quality; leave-one-site-out then holds each lab out in turn."""
    counts = {r: {"no_pain": 4, "moderate": 4} for r in ("1", "2", "3", "4")}
    one = rb.synth(tmp_path / "one", size=48, counts=counts, jobs=1).parent
    two = rb.synth(tmp_path / "two", size=48, counts=counts, jobs=1, sites=2).parent
    m1, m2 = pd.read_csv(one / "manifest.csv", dtype=str), pd.read_csv(two / "manifest.csv", dtype=str)
    assert "site" not in m1.columns
    assert dict(zip(m2["subject"], m2["site"])) == {"1": "site1", "2": "site2", "3": "site1", "4": "site2"}
    for path, site in zip(m2["path"], m2["site"]):
        same = (one / path).read_bytes() == (two / path).read_bytes()
        assert same == (site == "site1"), path
    at1 = (m2["site"] == "site1").to_numpy()
    assert m1[at1].equals(m2.drop(columns="site")[at1])  # the first lab's rows: the one-lab replica's
    assert m1[["path", "label", "level"]].equals(m2[["path", "label", "level"]])  # every image keeps its label
    yaw = lambda m: m.loc[~at1, "pose_yaw"].astype(float).abs().mean()  # noqa: E731
    assert yaw(m2) > 1.5 * yaw(m1)  # the second lab's camera sees the same rats' heads turned further
    folds = get_protocol("leave-one-group-out:site").plan(rb.load_dataset(two).table)
    assert [f.subject for f in folds] == ["site1", "site2"]


# ---------------------------------------------------------------- the robustness page


def test_the_robustness_page_in_headless_chromium(tmp_path):
    import importlib.util
    import shutil
    from pathlib import Path

    from ratspain_bench.board.robustness import Board, Cell, Row, render_html, render_markdown

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("needs Debian's chromium")
    c = lambda v: Cell(v, v - 0.1, v + 0.05, 100)  # noqa: E731
    rows = (Row("painseeker", c(0.81), {"frontal": c(0.8), "moderate": c(0.7), "extreme": c(0.6)}, Cell(0.2, 0.05, 0.4, 200),
                {"leave-one-group-out:site": c(0.7)}),
            Row("lbp-r1p8-8x8", c(0.76), {"frontal": c(0.78), "moderate": c(0.75), "extreme": c(0.74)}, Cell(0.04, -0.1, 0.2, 200),
                {"leave-one-group-out:site": c(0.72)}),
            Row("resnet18<script>", c(0.70)))
    board = Board("replica", "fp", rows, "pose-shift", ("leave-one-group-out:site",), "every distinct resample of 6 rats")
    (tmp_path / "robustness.html").write_text(render_html(board))
    md = render_markdown(board)
    assert "| 1 | painseeker | 0.810 [0.710, 0.860] | 0.800 [0.700, 0.850] |" in md and "+0.200 [+0.050, +0.400]" in md
    spec = importlib.util.spec_from_file_location("check_page", Path(__file__).parent / "browser" / "check_page.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    result = check.check_page(tmp_path / "robustness.html", chromium=chromium, table="robustness-table", column="LORO F1")
    assert result["console_errors"] == [] and result["rows"] == 3
    assert result["sorted_by_method"] and result["order_changed_by_click"]
    assert result["sorted_descending"] and result["sorted_ascending"]
    assert "<script>" not in render_html(board).split("<tbody>")[1].split("</tbody>")[0].replace("&lt;script&gt;", "")


def test_video_clips_of_two_sites(tmp_path):
    from ratspain_bench.video.synth import render_videos

    one = render_videos(tmp_path / "one", rats_per_group=1, seconds=2, fps=5, key_fps=1, seed=1)
    two = render_videos(tmp_path / "two", rats_per_group=1, seconds=2, fps=5, key_fps=1, seed=1, sites=2)
    side = pd.read_csv(two, dtype=str)
    assert "site" not in pd.read_csv(one, dtype=str).columns
    assert dict(zip(side["subject"], side["site"])) == {"control1": "site1", "treated1": "site2"}
    for video, site in zip(side["video"], side["site"]):
        same = (one.parent / video).read_bytes() == (two.parent / video).read_bytes()
        assert same == (site == "site1"), video
