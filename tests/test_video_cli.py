"""From video to animals through the command line: `synth --video` -> `frames` -> `train` on an image replica ->
`predict --by subject,session` -> `groups`, as the video docs page shows it; the report checked in headless Chromium.
(The statistics' numbers are checked in tests/test_video.py.)"""
import importlib.util
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from ratspain_bench.cli import main

CHROMIUM = shutil.which("chromium")
COUNTS = json.dumps({str(i): {"no_pain": 30, "moderate": 30, "severe": 4} for i in range(1, 7)})


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("video-cli")
    mp = pytest.MonkeyPatch()
    mp.setenv("RATSPAIN_CACHE_DIR", str(root / "cache"))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.chdir(root)
    try:
        steps = [["synth", "clips/", "--video"],
                 ["frames", "--sidecar", "clips/videos.csv", "--per-minute", "20", "--faces", "dlc:clips/keypoints", "--out", "frames/",
                  "--quiet"],
                 ["synth", "faces/", "--size", "64", "--per-subject-counts", COUNTS],
                 ["train", "--method", "lbp-r1p8-8x8", "--data", "faces/", "--set", "image_size=64", "--out", "m/"],
                 ["predict", "m/", "frames/manifest.csv", "--by", "subject,session", "--out", "scores/scores.csv", "--quiet"],
                 ["groups", "scores/summary.csv", "--format", "json", "--out", "stats/"]]
        for step in steps:
            assert main(step) == 0, step
        yield root
    finally:
        mp.undo()


def test_frames_keeps_the_papers_rule(pipeline):
    m = pd.read_csv(pipeline / "frames" / "manifest.csv")
    assert list(m.columns[:5]) == ["path", "subject", "session", "time_s", "sharpness"] and "group" in m.columns
    per_minute = m.groupby(["video", (m["time_s"] // 60)]).size()
    assert per_minute.max() <= 20 and len(m) > 12 * 15
    truth = pd.read_csv(pipeline / "clips" / "truth.csv")
    blurred = set(zip(truth.loc[truth["blurred"].astype(bool), "video"], truth.loc[truth["blurred"].astype(bool), "time_s"].round(3)))
    assert not blurred & set(zip(m["video"], m["time_s"].round(3)))  # no blurred frame kept


def test_summary_and_group_test_find_the_treated_animals(pipeline, capsys):
    s = pd.read_csv(pipeline / "scores" / "summary.csv", dtype={"subject": str})
    assert len(s) == 12 and {"frames", "mean_pain_prob", "mean_pain_prob_ci_low", "mean_pain_prob_ci_high", "pain_share"} <= set(s.columns)
    assert (s["mean_pain_prob_ci_low"] <= s["mean_pain_prob"]).all() and (s["mean_pain_prob"] <= s["mean_pain_prob_ci_high"]).all()
    mean = s.groupby(["group", "session"])["mean_pain_prob"].mean()
    assert mean["treated", "post"] > mean["treated", "pre"] and mean["treated", "post"] > mean["control", "post"]
    result = json.loads((pipeline / "stats" / "groups.json").read_text())
    assert result["headline"]["diff"] > 0
    assert result["headline"]["permutation"]["p_greater"] == pytest.approx(1 / 20)  # the smallest p of 3 vs 3 animals
    lmm = result["lmm"]["terms"]
    assert lmm["difference in change (treated x post)"]["p"] < 0.05
    assert result["within"]["control"]["sign_flip"]["p_two_sided"] > 0.05 and lmm["control's change (post)"]["p"] > 0.05
    assert (pipeline / "stats" / "groups.png").stat().st_size > 5_000
    for subject in s["subject"].unique():
        assert (pipeline / "scores" / "timecourse" / f"{subject}.png").is_file()


def test_predict_by_refuses_what_it_cannot_summarise(pipeline, capsys):
    assert main(["predict", str(pipeline / "m"), str(pipeline / "frames"), "--by", "subject", "--out", "x/scores.csv"]) == 2
    assert "--by needs one manifest CSV" in capsys.readouterr().err


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (/usr/bin/chromium)")
def test_the_report_in_headless_chromium(pipeline):
    spec = importlib.util.spec_from_file_location("check_page", Path(__file__).parent / "browser" / "check_page.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    facts = check.page_facts(pipeline / "scores" / "report.html", """JSON.stringify({
      images: Array.prototype.map.call(document.images, function (i) { return i.complete && i.naturalWidth > 0; }),
      rows: document.querySelectorAll('table tbody tr').length,
      external: Array.prototype.filter.call(document.querySelectorAll('[src],[href]'), function (e) {
        var u = e.getAttribute('src') || e.getAttribute('href'); return !/^(data:|#)/.test(u); }).length,
      text: document.body.innerText})""", chromium=CHROMIUM)
    v = facts["value"]
    assert facts["console_errors"] == []
    assert len(v["images"]) >= 7 and all(v["images"])  # six time courses and the group plot, all decoded
    assert v["rows"] >= 12 and v["external"] == 0  # the summary table; nothing fetched from outside the file
    assert "treated - control difference in (post - pre)" in v["text"]


def test_python_api_gives_what_the_commands_wrote(pipeline, tmp_path):
    """rb.frames, load_model(...).predict(..., by=...) and rb.groups: the same frames, summary and comparison."""
    import ratspain_bench as rb

    manifest = rb.frames(None, tmp_path / "frames", per_minute=20, faces=f"dlc:{pipeline / 'clips' / 'keypoints'}",
                         sidecar=pipeline / "clips" / "videos.csv")
    cli_manifest = pd.read_csv(pipeline / "frames" / "manifest.csv")
    assert pd.read_csv(manifest)[["path", "subject", "time_s"]].equals(cli_manifest[["path", "subject", "time_s"]])
    out = rb.load_model(pipeline / "m").predict(pipeline / "frames" / "manifest.csv", by=["subject", "session"])
    cli = pd.read_csv(pipeline / "scores" / "summary.csv", dtype={"subject": str})
    assert len(out.scores) == len(out.frames) == len(cli_manifest)
    pd.testing.assert_frame_equal(out.summary[cli.columns].reset_index(drop=True), cli, check_dtype=False)
    result = rb.groups(out.summary)
    assert result.as_dict()["headline"] == json.loads((pipeline / "stats" / "groups.json").read_text())["headline"]
    from ratspain_bench.video.report import write_report

    paths, n = write_report(out.scores, pipeline / "frames" / "manifest.csv", ["subject", "session"], tmp_path / "report")
    assert n == 12 and paths["summary"].read_text() == (pipeline / "scores" / "summary.csv").read_text()
    assert paths["groups_json"].read_text() == (pipeline / "scores" / "groups.json").read_text()
