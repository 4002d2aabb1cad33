"""`predict --by ... --overlay`: each video annotated frame by frame with the state of its latest candidate frame (the
face box, green or red, and why it was not scorable) and its latest score; and what `--high` and quality.csv add to
summary.csv through the command line and the Python API."""
import av
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from tinydata import make_dataset

import ratspain_bench as rb
from ratspain_bench.cli import main
from ratspain_bench.errors import InputError
from ratspain_bench.video.overlay import score_text, write_overlays
from ratspain_bench.video.summary import join, read_quality

W, H, FPS, N = 160, 120, 10, 30  # 3 s; a candidate every 0.2 s: frames 0, 2, ..., 28
STATES = [("true", ""), ("false", "pose beyond max-yaw"), ("false", "no face found"), ("true", ""), ("false", "blurred")]
SCORED = {0: 0.73, 10: 0.2, 20: None, 26: 0.9}  # kept frames and their P(pain); frame 20 could not be read


def box_of(k):
    return (40 + 2 * k, 30, 60, 50)  # even x, y: the 2 px box edge fills whole chroma blocks


def background(i):
    img = np.full((H, W, 3), 128, np.uint8)
    img[..., 1] += (np.arange(W) // 16).astype(np.uint8)  # a faint gradient
    img[60:64, 140 + i % 8:144 + i % 8] = 200  # something moves, far from the drawings
    return img


def decode(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24").astype(int) for f in c.decode(video=0)]


@pytest.fixture()
def clip(tmp_path):
    """A video, the frames' quality.csv and manifest (one subject), and their scores."""
    (tmp_path / "videos").mkdir()
    video = tmp_path / "videos" / "rat1_pre.mp4"
    with av.open(str(video), "w") as out:
        s = out.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for i in range(N):
            f = av.VideoFrame.from_ndarray(background(i), format="rgb24")
            f.pts = i
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    rows = []
    for k in range(N // 2):
        ok, reason = STATES[k % len(STATES)]
        box = ("",) * 4 if reason == "no face found" else box_of(k)
        rows.append({"video": "videos/rat1_pre.mp4", "frame": 2 * k, "time_s": 0.2 * k, "scorable": ok, "reason": reason,
                     "sharpness": 300, "light": 128, **dict(zip(("box_x", "box_y", "box_w", "box_h"), box)), "pose_yaw": "",
                     "file": str(video), "subject": "rat1", "session": "pre", "group": "ctl"})
    out_dir = tmp_path / "frames"
    (out_dir / "frames" / "rat1_pre").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(out_dir / "quality.csv", index=False)
    decoded = decode(video)
    man = pd.DataFrame([{"path": f"frames/rat1_pre/rat1_pre_{i:06d}.jpg", "subject": "rat1", "session": "pre", "time_s": i / FPS,
                         "sharpness": 300, "video": "videos/rat1_pre.mp4", "group": "ctl"} for i in SCORED])
    for i, p in zip(SCORED, man["path"]):
        Image.fromarray(decoded[i].astype(np.uint8)).save(out_dir / p)
    man.to_csv(out_dir / "manifest.csv", index=False)
    scores = pd.DataFrame({"image": man["path"], "pain_probability": [np.nan if v is None else v for v in SCORED.values()],
                           "error": ["" if v is not None else "OSError: truncated" for v in SCORED.values()]})
    return video, out_dir / "manifest.csv", scores


def mean_rgb(img, rows, cols):
    return img[rows[0]:rows[1], cols[0]:cols[1]].reshape(-1, 3).mean(axis=0)


def test_every_frame_shows_its_latest_candidate_and_score(clip, tmp_path):
    video, manifest, scores = clip
    paths = write_overlays(join(scores, manifest), read_quality(manifest), tmp_path / "overlay")
    assert paths == [tmp_path / "overlay" / "rat1_pre.mp4"]
    source, drawn = decode(video), decode(paths[0])
    assert len(drawn) == len(source) == N and drawn[0].shape == (H, W, 3)
    score_band, reason_band = ((0, 14), (0, 80)), ((H - 16, H), (0, 60))
    for i, (src, out) in enumerate(zip(source, drawn)):
        k = i // 2  # the candidate at frame 2k governs frames 2k and 2k + 1
        ok, reason = STATES[k % len(STATES)]
        x, y, w, _ = box_of(k)
        edge = mean_rgb(out, (y, y + 2), (x + 5, x + w - 5))  # the box's top edge
        if reason == "no face found":
            assert np.abs(out[y:y + 2, x + 5:x + w - 5] - src[y:y + 2, x + 5:x + w - 5]).mean() < 6, i
        elif ok == "true":
            assert edge[1] - edge[0] > 100 and edge[1] - edge[2] > 100, (i, edge)  # green
        else:
            assert edge[0] - edge[1] > 100 and edge[0] - edge[2] > 100, (i, edge)  # red
        changed = np.abs(out - src).mean(axis=2)
        reason_changed = changed[reason_band[0][0]:reason_band[0][1], reason_band[1][0]:reason_band[1][1]].mean()
        assert (reason_changed > 30) == (ok == "false"), (i, reason_changed)
        assert changed[score_band[0][0]:score_band[0][1], score_band[1][0]:score_band[1][1]].mean() > 30, i  # a score from frame 0 on
    # the score shown is the latest scored frame's: 0.73 for frames 0-9, 0.2 for 10-25 (frame 20 has none), 0.9 from 26
    band = [d[score_band[0][0]:score_band[0][1], score_band[1][0]:score_band[1][1]] for d in drawn]
    for a, b, same in [(0, 9, True), (10, 19, True), (19, 25, True), (26, 29, True), (9, 10, False), (25, 26, False)]:
        assert ((np.abs(band[a] - band[b]).max(axis=2) > 80).sum() < 3) == same, (a, b)  # white text where black was
    again = write_overlays(join(scores, manifest), read_quality(manifest), tmp_path / "again")
    assert again[0].read_bytes() == paths[0].read_bytes()  # reproducible bytes
    assert not list((tmp_path / "overlay").glob(".*"))  # no temporary file left


def test_score_text_names_the_score():
    assert score_text(0.734, rgs=False) == "P(pain) 0.73" and score_text(1.23, rgs=True) == "RGS 1.2"


def test_a_long_reason_wraps_within_a_small_frame():
    """On 160 px the longest reason takes two lines inside the frame; on 480 px one."""
    from PIL import ImageFont

    from ratspain_bench.video.frames import REASONS
    from ratspain_bench.video.overlay import annotate

    longest = max(REASONS, key=len)
    for width, lines in ((160, 2), (480, 1)):
        image = Image.new("RGB", (width, width * 3 // 4), (128, 128, 128))
        font = ImageFont.load_default(max(10, image.height // 24))
        annotate(image, font, 2, (False, longest, np.full(4, np.nan)), None)
        a = np.asarray(image)
        band = (a == 0).all(axis=2)  # the black band under the text
        rows, cols = np.flatnonzero(band.any(axis=1)), np.flatnonzero(band.any(axis=0))
        assert cols.max() < width - 1 and rows.max() < image.height - 1  # nothing runs off the frame
        white = (a[rows.min():rows.max() + 1, cols.min():cols.max() + 1] > 160).all(axis=2)
        ink = np.flatnonzero(white.any(axis=1))  # text rows; a gap between two lines of text
        assert (np.diff(ink) > 1).sum() == lines - 1, (width, ink)


def test_overlays_refuse_what_they_cannot_draw(clip, tmp_path, capsys):
    _, manifest, scores = clip
    q = pd.read_csv(manifest.parent / "quality.csv")
    q.loc[3, "box_w"] = np.nan  # line 5 of the file: three of four box numbers
    q.to_csv(manifest.parent / "quality.csv", index=False)
    with pytest.raises(InputError, match=r"quality.csv:5: want four box numbers"):
        read_quality(manifest)
    q.loc[3, "box_w"] = 60
    q.assign(file=str(tmp_path / "gone.mp4")).to_csv(manifest.parent / "quality.csv", index=False)
    with pytest.raises(InputError, match="video videos/rat1_pre.mp4: no such file .*gone.mp4"):
        write_overlays(join(scores, manifest), read_quality(manifest), tmp_path / "overlay")
    (manifest.parent / "quality.csv").unlink()
    assert read_quality(manifest) is None
    args = ["predict", str(tmp_path / "no-model"), str(manifest), "--by", "subject", "--out", str(tmp_path / "s" / "scores.csv")]
    assert main(args + ["--overlay"]) == 2  # refused before the model is even looked for
    err = capsys.readouterr().err
    assert "quality.csv: no such file (the frames' quality report); run frames again to write it" in err
    assert len(err.splitlines()) == 1
    assert main(args[:3] + args[5:] + ["--overlay"]) == 2 and "--high and --overlay need --by" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("overlay-model")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RATSPAIN_CACHE_DIR", str(root / "cache"))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        rb.train("lbp-r1p8-8x8", str(make_dataset(root / "data")), out=root / "m", set={"image_size": "48"}, runs_dir=root / "runs")
        yield root / "m"


def test_predict_overlay_and_high_through_the_cli_and_the_api(clip, model, tmp_path, capsys):
    _, manifest, _ = clip
    out = tmp_path / "scores" / "scores.csv"
    assert main(["predict", str(model), str(manifest), "--by", "subject", "--high", "0.4", "--overlay", "--out", str(out),
                 "--quiet"]) == 0
    assert f"overlay of 1 video(s) -> {out.parent / 'overlay'}" in capsys.readouterr().err
    scores, summary = pd.read_csv(out), pd.read_csv(out.parent / "summary.csv")
    assert list(summary.columns[-3:]) == ["scorable_share", "high_share", "high_threshold"]
    row = summary.iloc[0]
    assert row["scorable_share"] == pytest.approx(6 / 15)  # STATES: 2 of 5 scorable, 15 candidates
    assert row["high_share"] == pytest.approx((scores["pain_probability"] > 0.4).mean()) and row["high_threshold"] == 0.4
    assert len(decode(out.parent / "overlay" / "rat1_pre.mp4")) == N
    api = rb.load_model(model).predict(manifest, by=["subject"], high=0.4, overlay=tmp_path / "api")
    pd.testing.assert_frame_equal(api.summary, summary, check_dtype=False)
    assert (tmp_path / "api" / "rat1_pre.mp4").read_bytes() == (out.parent / "overlay" / "rat1_pre.mp4").read_bytes()
    with pytest.raises(InputError, match="high threshold 2: P.pain. lies between 0 and 1"):
        rb.load_model(model).predict(manifest, by=["subject"], high=2)
