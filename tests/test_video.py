"""The video track: synthetic cage videos, frame extraction, per-animal summaries, group comparisons, and the whole
way from videos to a treated-vs-control answer with a model trained on the replica."""
import io
import itertools
import math
import re
import shutil

import av
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ratspain_bench.data.check import HASH_THRESHOLD, perceptual_hashes
from ratspain_bench.data.rat_face import draw_face, look_for
from ratspain_bench.errors import InputError
from ratspain_bench.model.saved import SyntheticDataWarning
from ratspain_bench.tasks import AUS
from ratspain_bench.video import frames as frames_mod
from ratspain_bench.video.faces import parse_source
from ratspain_bench.video.frames import MARGIN, MIN_SHARPNESS, extract
from ratspain_bench.video.groups import (
    compare,
    hedges_g,
    mixed_model,
    permutation_test,
    sign_flip_test,
)
from ratspain_bench.video.report import smooth, write_outputs
from ratspain_bench.video.summary import join, summarise
from ratspain_bench.video.synth import render_videos

SECONDS, FPS, KEY_FPS = 75, 5, 1  # 75 s: a whole minute and a part of the next
PER_MINUTE = 20  # 3 s slots: 25 frames per session of 75 s


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """2 groups x 3 rats x pre/post, 75 s at 5 fps, the face found from the clips' keypoints at 20 frames a minute."""
    root = tmp_path_factory.mktemp("video")
    sidecar = render_videos(root / "videos", seconds=SECONDS, fps=FPS, key_fps=KEY_FPS, seed=0)
    manifest = extract(None, root / "frames", per_minute=PER_MINUTE, faces=dlc(sidecar), sidecar=sidecar, progress=False)
    return root, sidecar, manifest


def dlc(sidecar):
    return parse_source(f"dlc:{sidecar.parent / 'keypoints'}")


def truth_of(sidecar) -> pd.DataFrame:
    return pd.read_csv(sidecar.parent / "truth.csv")


def with_truth(manifest, sidecar) -> pd.DataFrame:
    """Kept frames with what the renderer drew in them (frames matched by time)."""
    m = pd.read_csv(manifest)
    m["frame"] = (m["time_s"] * FPS).round().astype(int)
    return m.merge(truth_of(sidecar).drop(columns="time_s"), on=["video", "frame"], how="left", validate="one_to_one")


def write_video(path, images, fps=5, crf=23):
    """Encode RGB arrays as an H.264 clip (one array per frame)."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt, s.options = images[0].shape[1], images[0].shape[0], "yuv420p", {"crf": str(crf)}
        for i, a in enumerate(images):
            f = av.VideoFrame.from_ndarray(a, format="rgb24")
            f.pts = i
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def face_image(index, size=120):
    data, _ = draw_face(look_for(index), dict.fromkeys(AUS, 0.3), (0, 0, 0), np.random.default_rng(index), size, 92, 0.5, 1.0, 1.0)
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


# --------------------------------------------------------------------------- rendering

def test_rendering_is_deterministic_and_the_sidecar_lists_every_clip(tmp_path):
    a = render_videos(tmp_path / "a", rats_per_group=1, seconds=6, fps=5, key_fps=1, seed=3)
    b = render_videos(tmp_path / "b", rats_per_group=1, seconds=6, fps=5, key_fps=1, seed=3)
    c = render_videos(tmp_path / "c", rats_per_group=1, seconds=6, fps=5, key_fps=1, seed=4)
    files = sorted(str(p.relative_to(a.parent)) for p in a.parent.rglob("*") if p.is_file())
    clips = [f"{s}_{t}" for s in ("control1", "treated1") for t in ("post", "pre")]
    assert files == sorted(["truth.csv", "videos.csv", "faces.json", *(f"videos/{c}.mp4" for c in clips),
                            *(f"keypoints/{c}.{x}" for c in clips for x in ("csv", "h5"))])
    assert all((a.parent / f).read_bytes() == (b.parent / f).read_bytes() for f in files)
    assert (a.parent / "videos/control1_pre.mp4").read_bytes() != (c.parent / "videos/control1_pre.mp4").read_bytes()
    side = pd.read_csv(a)
    assert list(side.columns) == ["video", "subject", "session", "group"]
    assert side.values.tolist() == [[f"videos/{s}_{t}.mp4", s, t, g] for s, g in (("control1", "control"), ("treated1", "treated"))
                                    for t in ("pre", "post")]
    truth = truth_of(a)
    assert truth.groupby("video").size().eq(30).all()
    with av.open(str(a.parent / "videos/control1_pre.mp4")) as v:
        frames = [f.to_ndarray(format="gray").astype(int) for f in v.decode(video=0)]
    assert len(frames) == 30 and all((x != y).sum() > 100 for x, y in itertools.pairwise(frames))  # every frame differs
    with pytest.raises(InputError, match="not empty"):
        render_videos(tmp_path / "a")


def test_pain_rises_only_after_treatment(study):
    _, sidecar, _ = study
    truth = truth_of(sidecar).merge(pd.read_csv(sidecar), on="video")
    truth["au"] = truth[[f"au_{a}" for a in AUS]].mean(axis=1)
    au = truth.groupby(["group", "session"])["au"].mean()
    assert au["treated", "post"] - au["treated", "pre"] > 0.7
    assert abs(au["control", "post"] - au["control", "pre"]) < 0.1
    assert 0.05 < truth["blurred"].mean() < 0.25 and 0.03 < truth["turned"].mean() < 0.3


# --------------------------------------------------------------------------- extraction

def test_extract_keeps_at_most_n_per_minute_one_per_slot_and_no_blurred_frame(study):
    _, sidecar, manifest = study
    m = with_truth(manifest, sidecar)
    assert list(pd.read_csv(manifest, nrows=1).columns) == ["path", "subject", "session", "time_s", "sharpness", "video", "box_x", "box_y", "box_w",
                                    "box_h", "pose_yaw", "pose_roll", "pose_bin", "scorable", "reason", "group"]
    slot = np.floor(m["time_s"] * PER_MINUTE / 60).astype(int)
    assert not slot.groupby(m["video"]).apply(lambda s: s.duplicated().any()).any()  # one frame per slot at most
    per_minute = m.groupby([m["video"], m["time_s"] // 60]).size()
    assert per_minute.max() <= PER_MINUTE and per_minute.xs(0.0, level=1).min() >= PER_MINUTE - 2
    assert m["blurred"].eq(0).all() and m["sharpness"].ge(MIN_SHARPNESS).all()
    assert m["subject"].str.fullmatch(r"(control|treated)[123]").all()
    sizes = [Image.open(manifest.parent / p).size for p in m["path"]]
    grown = (1 + 2 * MARGIN) * m["box_w"]  # each frame's face square and its margin, cut to the frame
    assert all(w <= g + 1 and h <= g + 1 for (w, h), g in zip(sizes, grown))
    assert np.mean([w == h and abs(w - g) <= 1 for (w, h), g in zip(sizes, grown)]) > 0.5  # the rest: cut by the frame (0.65)


def test_the_sharpness_floor_is_what_drops_the_blurred_frames(study, tmp_path):
    _, sidecar, _ = study
    side = pd.read_csv(sidecar)
    videos = [sidecar.parent / v for v in side["video"]]
    loose = extract(videos, tmp_path / "loose", per_minute=PER_MINUTE, min_sharpness=0, faces=dlc(sidecar), sidecar=sidecar,
                    progress=False)
    m = with_truth(loose, sidecar)
    assert m["blurred"].sum() >= 5  # slots that start blurred: the default floor skipped to a sharp frame
    assert m.loc[m["blurred"] == 1, "sharpness"].max() < MIN_SHARPNESS / 2 < m.loc[m["blurred"] == 0, "sharpness"].min() / 4


def test_extract_drops_exact_and_near_duplicates(tmp_path):
    a, b = face_image(0), face_image(1)
    rng = np.random.default_rng(0)
    near = [np.clip(a + rng.normal(0, 2, a.shape), 0, 255).astype(np.uint8) for _ in range(150)]
    clip = write_video(tmp_path / "still.mp4", [a] * 150 + near + [b] * 150)  # 30 s each at 5 fps
    h_a, h_b = perceptual_hashes(Image.fromarray(a)), perceptual_hashes(Image.fromarray(b))
    assert sum((x ^ y).bit_count() for x, y in zip(h_a, h_b)) > HASH_THRESHOLD  # a and b are different faces
    m = pd.read_csv(extract(clip, tmp_path / "out", per_minute=6, progress=False))  # 10 s slots: 9 slots
    assert m["time_s"].tolist() == [0.0, 60.0]  # a once, b once: every later slot saw only copies
    assert (m["subject"] == "still").all() and (m["session"].isna() | (m["session"] == "")).all()
    again = pd.read_csv(extract(clip, tmp_path / "all", per_minute=6, progress=False, min_sharpness=0))
    assert len(again) == 2  # not the sharpness floor's doing


def test_crop_sidecar_columns_and_arguments(tmp_path, study):
    _, sidecar, _ = study
    side = pd.read_csv(sidecar).head(2).assign(cage=["c1", "c2"])
    for v in side["video"]:
        (tmp_path / "v").mkdir(exist_ok=True)
        shutil.copy(sidecar.parent / v, tmp_path / "v")
    side["video"] = side["video"].str.replace("videos/", "v/")
    side.to_csv(tmp_path / "side.csv", index=False)
    m = pd.read_csv(extract(None, tmp_path / "o", per_minute=2, crop=(10, 5, 64, 48), sidecar=tmp_path / "side.csv", progress=False))
    assert list(m.columns) == ["path", "subject", "session", "time_s", "sharpness", "video", "box_x", "box_y", "box_w", "box_h",
                               "pose_yaw", "pose_roll", "pose_bin", "scorable", "reason", "group", "cage"]
    assert (m[["box_x", "box_y", "box_w", "box_h"]] == (10, 5, 64, 48)).all().all() and m["scorable"].all()
    assert m.groupby("video")["cage"].first().to_dict() == dict(zip(side["video"], side["cage"]))
    assert {Image.open(tmp_path / "o" / p).size for p in m["path"]} == {(64, 48)}
    m2 = pd.read_csv(extract(tmp_path / "v" / "control1_pre.mp4", tmp_path / "o2", per_minute=2, subject="R9", session="day3",
                             progress=False))
    assert set(m2["subject"]) == {"R9"} and set(m2["session"]) == {"day3"}
    lines = []
    with pytest.raises(InputError, match="no video could be decoded"):
        extract(tmp_path / "v" / "control1_pre.mp4", tmp_path / "o3", crop=(100, 0, 120, 120), on_error=lines.append, progress=False)
    assert len(lines) == 1 and "outside the 160x120 frame" in lines[0]
    for bad, msg in [(dict(crop=(-1, 0, 5, 5)), "crop"), (dict(per_minute=0), "per_minute"),
                     (dict(sidecar=tmp_path / "nope.csv"), "no such sidecar")]:
        with pytest.raises(InputError, match=msg):
            extract(tmp_path / "v" / "control1_pre.mp4", tmp_path / "o4", progress=False, **bad)
    (tmp_path / "bad.csv").write_text("video,who\nv/control1_pre.mp4,x\n")
    with pytest.raises(InputError, match=r"bad.csv:1: .*missing: subject"):
        extract(None, tmp_path / "o5", sidecar=tmp_path / "bad.csv", progress=False)
    (tmp_path / "bad2.csv").write_text("video,subject\nv/control1_pre.mp4,a\nv/control1_pre.mp4,b\n")
    with pytest.raises(InputError, match=r"bad2.csv:3: video .* listed twice"):
        extract(None, tmp_path / "o6", sidecar=tmp_path / "bad2.csv", progress=False)
    with pytest.raises(InputError, match="no such video file"):
        extract(tmp_path / "missing.mp4", tmp_path / "o7", progress=False)


def test_an_unreadable_video_is_one_line_and_the_others_go_on(tmp_path, study):
    _, sidecar, _ = study
    good = sidecar.parent / "videos" / "control1_pre.mp4"
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    lines = []
    m = pd.read_csv(extract([broken, good], tmp_path / "o", per_minute=5, on_error=lines.append, progress=False))
    assert len(lines) == 1 and "\n" not in lines[0] and lines[0].startswith(f"{broken}: cannot decode")
    assert len(m) and set(m["video"]) == {str(good)}
    assert not (tmp_path / "o" / "frames" / "broken").exists() and not list((tmp_path / "o" / "frames").glob(".*"))


def test_a_killed_run_resumes_with_the_missing_videos_only(tmp_path, study, monkeypatch):
    _, sidecar, _ = study
    real_scan, calls = frames_mod.scan, []

    def dies_on_the_third(job, *args):
        calls.append(job.name)
        if len(calls) == 3:
            raise KeyboardInterrupt  # a kill in the middle of a video
        return real_scan(job, *args)

    monkeypatch.setattr(frames_mod, "scan", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        extract(None, tmp_path / "o", per_minute=5, sidecar=sidecar, progress=False)
    done = sorted(p.name for p in (tmp_path / "o" / "frames").iterdir())
    assert done == sorted(calls[:2]) and not (tmp_path / "o" / "manifest.csv").exists()
    (tmp_path / "o" / "frames" / f".{calls[2]}.tmp").mkdir()  # what a kill -9 would leave
    calls.clear()
    monkeypatch.setattr(frames_mod, "scan", lambda job, *a: calls.append(job.name) or real_scan(job, *a))
    resumed = pd.read_csv(extract(None, tmp_path / "o", per_minute=5, sidecar=sidecar, progress=False))
    assert len(calls) == 10 and not set(calls) & set(done)
    fresh = pd.read_csv(extract(None, tmp_path / "fresh", per_minute=5, sidecar=sidecar, progress=False))
    pd.testing.assert_frame_equal(resumed, fresh)
    assert sorted(p.name for p in (tmp_path / "o" / "frames").iterdir()) == sorted(p.name for p in (tmp_path / "fresh" / "frames").iterdir())
    calls.clear()
    extract(None, tmp_path / "o", per_minute=6, sidecar=sidecar, progress=False)  # other settings: everything again
    assert len(calls) == 12


# --------------------------------------------------------------------------- summary

def hand_made(tmp_path):
    """A manifest of 9 frames (2 animals, 2 sessions, one group each) and an action-unit model's scores of them."""
    rows = [("a", "pre", "ctl"), ("a", "pre", "ctl"), ("a", "post", "ctl"), ("a", "post", "ctl"), ("a", "post", "ctl"),
            ("b", "pre", "trt"), ("b", "pre", "trt"), ("b", "post", "trt"), ("b", "post", "trt")]
    man = pd.DataFrame([{"path": f"frames/{i}.jpg", "subject": s, "session": t, "time_s": 10.0 * i, "sharpness": 100.0,
                         "group": g, "varies": str(i)} for i, (s, t, g) in enumerate(rows)])
    man.to_csv(tmp_path / "manifest.csv", index=False)
    p = [0.1, 0.3, 0.2, 0.6, 0.7, 0.4, 0.5, 0.9, np.nan]
    grades = np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 1, 2], [2, 1, 1, 1], [1, 0, 1, 0], [1, 1, 1, 1],
                       [2, 2, 1, 2], [0, 0, 0, 0]])
    scores = pd.DataFrame({"image": man["path"], "pain_probability": p, "pain": [pd.NA if np.isnan(v) else int(v > 0.5) for v in p]})
    for j, a in enumerate(AUS):
        scores[f"au_{a}"] = pd.array(list(grades[:8, j]) + [pd.NA], dtype="Int64")
    scores["error"] = [""] * 8 + ["OSError: truncated"]
    scores = scores.iloc[::-1].reset_index(drop=True)  # any order
    return man, scores


def test_summary_numbers_are_the_groupby_means(tmp_path):
    man, scores = hand_made(tmp_path)
    s = summarise(scores, tmp_path / "manifest.csv", n_boot=500)
    assert list(s.columns) == ["subject", "session", "group", "frames", "unscored", "mean_pain_prob", "mean_pain_prob_ci_low",
                               "mean_pain_prob_ci_high", "pain_share", "mean_rgs", *(f"mean_au_{a}" for a in AUS),
                               "scorable_share", "high_share", "high_threshold"]
    ok = scores[scores["error"] == ""].merge(man, left_on="image", right_on="path")
    ok["rgs"] = ok[[f"au_{a}" for a in AUS]].astype(float).mean(axis=1)
    ref = ok.groupby(["subject", "session"]).agg(frames=("image", "size"), mean_pain_prob=("pain_probability", "mean"),
                                                  pain_share=("pain", "mean"), mean_rgs=("rgs", "mean"),
                                                  mean_au_ears=("au_ears", "mean")).reset_index()
    got = s.set_index(["subject", "session"])
    for _, r in ref.iterrows():
        row = got.loc[(r["subject"], r["session"])]
        for col in ("frames", "mean_pain_prob", "pain_share", "mean_rgs", "mean_au_ears"):
            assert row[col] == pytest.approx(float(r[col]))
        assert row["mean_pain_prob_ci_low"] <= row["mean_pain_prob"] <= row["mean_pain_prob_ci_high"]
    assert got.loc[("b", "post"), "unscored"] == 1 and got.loc[("b", "post"), "frames"] == 1
    assert got.loc[("a", "post"), "mean_pain_prob_ci_low"] < got.loc[("a", "post"), "mean_pain_prob_ci_high"]
    pd.testing.assert_frame_equal(s, summarise(scores, tmp_path / "manifest.csv", n_boot=500))  # deterministic
    by_animal = summarise(scores, tmp_path / "manifest.csv", by="subject")
    assert by_animal["frames"].tolist() == [5, 3] and by_animal["group"].tolist() == ["ctl", "trt"]


def write_quality(tmp_path, rows) -> pd.DataFrame:
    """quality.csv beside the manifest: (subject, session, group, scorable) per candidate frame, every 0.2 s."""
    q = pd.DataFrame([{"video": f"{s}_{t}.mp4", "frame": 2 * i, "time_s": 0.2 * i, "scorable": ok, "reason": "" if ok == "true" else "blurred",
                       "sharpness": 100.0, "light": 120.0, "box_x": 10, "box_y": 10, "box_w": 50, "box_h": 50, "pose_yaw": "",
                       "file": f"/videos/{s}_{t}.mp4", "subject": s, "session": t, "group": g}
                      for i, (s, t, g, ok) in enumerate(rows)])
    q.to_csv(tmp_path / "quality.csv", index=False)
    return q


def test_scorable_and_high_grimace_shares_are_hand_computed(tmp_path):
    man, scores = hand_made(tmp_path)
    plain = summarise(scores, tmp_path / "manifest.csv", n_boot=10)
    assert plain["scorable_share"].isna().all()  # no quality.csv
    cands = [("a", "pre", "ctl", "true")] * 2 + [("a", "pre", "ctl", "false")] * 2 + [("a", "post", "ctl", "true")] * 3 \
        + [("a", "post", "ctl", "false")] * 2 + [("b", "pre", "trt", "true")] * 3 + [("b", "post", "trt", "false")] * 3 \
        + [("b", "post", "trt", "true")]
    q = write_quality(tmp_path, cands)
    ok = scores[scores["error"] == ""].merge(man, left_on="image", right_on="path")
    ok["rgs"] = ok[[f"au_{a}" for a in AUS]].astype(float).mean(axis=1)
    for by in (["subject", "session"], ["subject"]):
        share = q.groupby(by)["scorable"].apply(lambda v: (v == "true").mean())
        above = ok.groupby(by)["rgs"].apply(lambda r: (r > 0.67).mean())  # an AU model: the RGS, default 0.67
        got = summarise(scores, tmp_path / "manifest.csv", by=by, n_boot=10).set_index(by)
        assert got["scorable_share"].to_dict() == pytest.approx(share.to_dict())
        assert got["high_share"].to_dict() == pytest.approx(above.to_dict()) and (got["high_threshold"] == 0.67).all()
    got = summarise(scores, tmp_path / "manifest.csv", n_boot=10, high=1.0).set_index(["subject", "session"])
    assert got["high_share"].tolist() == [2 / 3, 0.0, 1.0, 0.0]  # a post, a pre, b post, b pre; b pre's RGS 1.0 is not above
    pain_model = scores.drop(columns=[f"au_{a}" for a in AUS])
    for high in (None, 0.3):
        got = summarise(pain_model, tmp_path / "manifest.csv", n_boot=10, high=high).set_index(["subject", "session"])
        cut = 0.5 if high is None else high
        above = ok.assign(high=ok["pain_probability"] > cut).groupby(["subject", "session"])["high"].mean()
        assert got["high_share"].to_dict() == pytest.approx(above.to_dict()) and (got["high_threshold"] == cut).all()
    with pytest.raises(InputError, match="high threshold 1.5: P.pain. lies between 0 and 1"):
        summarise(pain_model, tmp_path / "manifest.csv", high=1.5)
    with pytest.raises(InputError, match="quality.csv: no column varies to group its frames by"):
        summarise(scores, tmp_path / "manifest.csv", by=["varies"])
    (tmp_path / "crop").mkdir()  # a fixed crop's manifest: the per-frame columns are constant, and still not a group's
    crop = man.assign(box_x=20, box_y=0, box_w=120, box_h=120, scorable="true", reason="")
    crop.to_csv(tmp_path / "crop" / "manifest.csv", index=False)
    assert list(summarise(scores, tmp_path / "crop" / "manifest.csv").columns) == list(plain.columns)
    q.loc[3, "scorable"] = "maybe"
    q.to_csv(tmp_path / "quality.csv", index=False)
    with pytest.raises(InputError, match=r"quality.csv:5: scorable is not true or false"):
        summarise(scores, tmp_path / "manifest.csv")


def test_join_matches_the_manifest_path_or_the_file_and_refuses_strangers(tmp_path):
    man, scores = hand_made(tmp_path)
    by_file = scores.assign(image=[str(tmp_path / p) for p in scores["image"]])
    a, b = join(scores, tmp_path / "manifest.csv"), join(by_file, tmp_path / "manifest.csv")
    assert a["path"].tolist() == man["path"].tolist()  # manifest order
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(InputError, match=r"scores row 1: image elsewhere.jpg is not in the manifest"):
        join(scores.assign(image=["elsewhere.jpg"] + scores["image"].tolist()[1:]), tmp_path / "manifest.csv")
    with pytest.raises(InputError, match="summarise by cage"):
        summarise(scores, tmp_path / "manifest.csv", by=("cage",))


def test_report_files_are_self_contained(tmp_path):
    _, scores = hand_made(tmp_path)
    joined = join(scores, tmp_path / "manifest.csv")
    summary = summarise(joined, None)
    paths = write_outputs(summary, joined, tmp_path / "out")
    assert {"summary", "frames", "report", "timecourse/a", "timecourse/b"} <= set(paths)
    page = paths["report"].read_text()
    assert page.count("data:image/png;base64,") == 2 and not re.search(r'src="(?!data:)', page)
    assert "<table" in page and pd.read_csv(paths["summary"])["frames"].tolist() == summary["frames"].tolist()
    assert Image.open(paths["timecourse/a"]).format == "PNG"
    assert not list((tmp_path / "out").rglob(".*"))  # no temporary file left
    assert smooth([0, 10, 20, 1000], [1.0, 2.0, 3.0, 9.0], window_s=40).tolist() == [2.0, 2.0, 2.0, 9.0]


# --------------------------------------------------------------------------- group statistics

def test_permutation_and_sign_flip_p_values_equal_a_hand_enumeration():
    # pooled 0, 1, 2, 5; the six ways to call two of them "b", mean(b) - mean(a):
    # {0,1} -3, {0,2} -2, {0,5} +1, {1,2} -1, {1,5} +2, {2,5} +3 (observed)
    r = permutation_test([0, 1], [2, 5])
    assert (r["diff"], r["relabellings"], r["exact"]) == (3.0, 6, True)
    assert r["p_greater"] == pytest.approx(1 / 6) and r["p_two_sided"] == pytest.approx(2 / 6) and r["p_less"] == 1.0
    three = permutation_test([0.1, 0.2, 0.3], [0.5, 0.6, 0.7])
    assert (three["relabellings"], three["p_greater"], three["p_two_sided"]) == (20, pytest.approx(0.05), pytest.approx(0.1))
    # d = 1, 2, -0.5 (sum 2.5): sums of the 8 sign patterns are +-3.5, +-2.5, +-1.5, +-0.5
    f = sign_flip_test([1, 2, -0.5])
    assert f["patterns"] == 8 and f["p_greater"] == pytest.approx(2 / 8) and f["p_two_sided"] == pytest.approx(4 / 8)
    big = permutation_test(np.arange(15), np.arange(15) + 0.5, n_perm=2000)
    assert not big["exact"] and big["relabellings"] == 2000 and 0.5 < big["p_two_sided"] <= 1
    a, b = [1.0, 2.0, 4.0], [3.0, 5.0, 8.0]
    sd = math.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)
    assert hedges_g(a, b) == pytest.approx((np.mean(b) - np.mean(a)) / sd * (1 - 3 / (4 * 6 - 9)))


def paired_summary(seed=3):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(8):
        group = "control" if i < 4 else "treated"
        base = rng.normal(0.4, 0.1)
        for session in ("pre", "post"):
            rise = 0.2 if group == "treated" and session == "post" else 0.0
            rows.append({"subject": f"r{i}", "session": session, "group": group,
                         "mean_pain_prob": base + rise + rng.normal(0, 0.04)})
    return pd.DataFrame(rows)


def test_mixed_model_equals_statsmodels_called_directly():
    import statsmodels.formula.api as smf
    from scipy import stats

    summary = paired_summary()
    c = compare(summary)
    data = summary.assign(treated=(summary["group"] == "treated").astype(int), post=(summary["session"] == "post").astype(int))
    direct = smf.mixedlm("mean_pain_prob ~ treated * post", data, groups=data["subject"]).fit(reml=True)
    term = c.lmm["terms"]["difference in change (treated x post)"]
    assert term["estimate"] == pytest.approx(direct.fe_params["treated:post"], abs=1e-6)
    assert term["se"] == pytest.approx(direct.bse_fe["treated:post"], rel=1e-4)
    assert term["p_z"] == pytest.approx(direct.pvalues["treated:post"], rel=1e-3)
    assert term["df"] == 16 - 8 - 2 and term["p"] == pytest.approx(2 * stats.t.sf(abs(term["estimate"] / term["se"]), 6))
    # balanced pre/post: the interaction's t test is the two-sample t test of the changes
    ch = summary.pivot(index="subject", columns="session", values="mean_pain_prob").eval("post - pre")
    t = stats.ttest_ind(ch.iloc[4:], ch.iloc[:4])
    assert term["p"] == pytest.approx(t.pvalue, rel=1e-3)
    fit = mixed_model(data, "mean_pain_prob ~ treated * post", animal="subject")
    assert fit["params"]["post"] == pytest.approx(direct.fe_params["post"], abs=1e-6)
    assert c.lmm["terms"]["control's change (post)"]["estimate"] == pytest.approx(direct.fe_params["post"], abs=1e-6)


def test_compare_checks_its_input_and_prints_plots_and_serialises(tmp_path):
    import json

    summary = paired_summary()
    c = compare(summary)
    assert c.paired and c.headline["measure"] == "change" and c.per_animal["group"].tolist() == ["control"] * 4 + ["treated"] * 4
    changes = c.per_animal.set_index("animal")["change"]
    assert c.headline["diff"] == pytest.approx(changes.iloc[4:].mean() - changes.iloc[:4].mean())
    lo, hi = c.headline["diff_ci"]
    assert lo <= c.headline["diff"] <= hi and c.headline["permutation"]["relabellings"] == 70
    text = c.text()
    assert "treated - control difference in (post - pre)" in text and "sign-flip" in text and "mixed model" in text
    json.dumps(c.as_dict())
    assert c.plot(tmp_path / "g.png").stat().st_size > 1000
    flat = compare(summary[summary["session"] == "pre"])
    assert not flat.paired and flat.lmm == {"skipped": "one row per animal: the animal's random effect is not identified"}
    with pytest.raises(InputError, match="want two groups"):
        compare(summary.assign(group=["a", "b", "c", "d"] * 4))
    with pytest.raises(InputError, match="in both groups"):
        compare(summary.assign(group=["control", "treated"] * 8))
    with pytest.raises(InputError, match="2 rows for animal r0, session pre"):
        compare(pd.concat([summary, summary.head(1)]))
    part = compare(summary.drop(index=[1]))
    assert "r0" in part.notes[0] and len(part.per_animal) == 7


# --------------------------------------------------------------------------- end to end

def test_from_videos_to_animals_end_to_end(study, tmp_path, monkeypatch):
    """Videos -> frames -> a model trained on a small replica scores them -> per animal and session -> groups.

    The design has 3 animals per group, so the exact permutation test over animals has 20 relabellings: its
    smallest p is 0.05 one-sided (treated higher, the direction the study is about) and 0.1 two-sided. We ask for
    that smallest one-sided p (every treated animal's change above every control animal's) and for the mixed
    model's interaction (t, 4 df) below 0.05; and, in the control group, a small change that neither finds."""
    import ratspain_bench as rb

    monkeypatch.setenv("RATSPAIN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _, _, manifest = study
    counts = {str(i): {"no_pain": 30, "moderate": 30, "severe": 4} for i in range(1, 7)}
    replica = rb.synth(tmp_path / "replica", seed=0, size=64, counts=counts)
    model = rb.train("lbp-r1p8-8x8", str(replica.parent), out=tmp_path / "model", runs_dir=tmp_path / "runs",
                     set={"image_size": "64"})
    with pytest.warns(SyntheticDataWarning):
        scores = model.predict(manifest)
    assert scores["error"].eq("").all()
    summary = summarise(scores, manifest)
    assert summary["frames"].between(20, 26).all() and len(summary) == 12
    mean = summary.groupby(["group", "session"])["mean_pain_prob"].mean()
    assert mean["treated", "post"] > mean["treated", "pre"] + 0.1
    assert mean["treated", "post"] > mean["control", "post"] + 0.1
    c = compare(summary)
    head = c.headline
    assert head["permutation"]["relabellings"] == 20 and head["permutation"]["p_greater"] == pytest.approx(0.05)
    assert head["diff"] > 0.1 and head["diff_ci"][0] > 0
    lmm = c.lmm["terms"]
    assert lmm["difference in change (treated x post)"]["p"] < 0.05
    assert lmm["treated's change (post + treated x post)"]["p"] < 0.05
    control = c.within["control"]
    assert abs(control["mean_change"]) < head["diff"] / 3
    assert lmm["control's change (post)"]["p"] > 0.05 and control["sign_flip"]["p_two_sided"] > 0.05
    paths = write_outputs(summary, join(scores, manifest), tmp_path / "report", comparison=c)
    page = paths["report"].read_text()
    assert "treated - control difference in (post - pre)" in page and page.count("data:image/png;base64,") == 7
