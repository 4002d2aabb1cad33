"""The face detector a lab trains on its own boxes (issue 33): COCO boxes read (video frames too) with one-line errors,
AP@0.5 and IoU against hand-computed values, a detector trained on four animals' clips finding the other two's faces,
its folder and MLflow run, determinism, and the CLI."""
from __future__ import annotations

import contextlib
import io
import json
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

from ratspain_bench.cli import main
from ratspain_bench.errors import InputError
from ratspain_bench.video.detector import (
    META,
    WEIGHTS,
    FaceDetector,
    Settings,
    average_precision,
    evaluate,
    fit,
    load,
    load_images,
    read_coco,
    scaled,
    train,
)

HOLDOUT = ("control3", "treated3")
FAST = ["--epochs", "8", "--image-size", "112"]  # about 55 s on a core: IoU >= 0.7 on 97% and 94% of the held-out frames


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Six rats' clips (two sessions each, 16 frames of 160x120: a fresh face every frame) and their faces.json."""
    from ratspain_bench.video.synth import render_videos

    root = tmp_path_factory.mktemp("clips") / "c"
    render_videos(root, rats_per_group=3, seconds=8, fps=2, key_fps=2, seed=0)
    return root / "faces.json"


@pytest.fixture(scope="module")
def fold(clips, tmp_path_factory):
    """`detector train --holdout control3,treated3 --epochs 8 --image-size 112` (trained on the four other animals): its
    folder, printout, store."""
    tmp = tmp_path_factory.mktemp("fold")
    uri = f"sqlite:///{tmp / 'runs' / 'mlflow.db'}"
    before, out = torch.get_num_threads(), io.StringIO()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(out):
            code = main(["detector", "train", "--boxes", str(clips), "--holdout", ",".join(HOLDOUT), "--out", str(tmp / "model"),
                         "--runs-dir", str(tmp / "runs"), "--tracking-uri", uri, "--quiet", *FAST])
    finally:
        torch.set_num_threads(before)
    assert code == 0
    return tmp / "model", out.getvalue(), uri


def _held_out(clips):
    items = [it for it in read_coco(clips) if it.animal in HOLDOUT]
    return items, load_images(items)


def _overlaps(detector, items, images) -> np.ndarray:
    """IoU of each image's box found with its true box (0 where none), by torchvision's `box_iou`, not ours."""
    found = detector.detect(images)
    truth = np.array([[it.box[0], it.box[1], it.box[0] + it.box[2], it.box[1] + it.box[3]] for it in items])
    boxes = np.array([[f[0], f[1], f[0] + f[2], f[1] + f[3]] if f else [0, 0, 0, 0] for f in found])
    return np.diag(box_iou(torch.tensor(boxes), torch.tensor(truth)).numpy())


def test_briefly_trained_on_four_animals_it_finds_the_other_two_faces(clips, fold, one_thread):
    """The issue's bar with small images and few epochs: IoU >= 0.7 on 90% of each held-out animal's frames."""
    model, printed, _ = fold
    meta = json.loads((model / META).read_text())
    assert meta["holdout"] == list(HOLDOUT) and sorted(meta["animals"]) == ["control1", "control2", "treated1", "treated2"]
    items, images = _held_out(clips)
    overlap = _overlaps(load(model), items, images)
    for animal in HOLDOUT:
        mine = np.array([it.animal == animal for it in items])
        assert mine.sum() == 32
        m = meta["metrics"]["per_animal"][animal]
        assert m["ap50"] >= 0.95 and (overlap[mine] >= 0.7).mean() >= 0.9, (animal, np.sort(overlap[mine])[:5])
        assert m["mean_iou"] == pytest.approx(overlap[mine].mean(), abs=1e-6)  # the saved model's boxes are those measured
        assert m["iou70"] == pytest.approx((overlap[mine] >= 0.7).mean())
        assert f"\n{animal}" in printed and f"{m['mean_iou']:.3f}" in printed


@pytest.mark.slow
def test_trained_on_four_animals_it_finds_the_other_two_faces_to_iou_07(clips, tmp_path, one_thread):
    """The default settings (12 epochs at 128 px, about 90 s on a core): IoU >= 0.7 on 90% of the held-out frames
    (measured: all of them)."""
    meta = train(clips, out=tmp_path / "model", holdout=HOLDOUT, runs_dir=tmp_path / "runs",
                 tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    items, images = _held_out(clips)
    overlap = _overlaps(load(tmp_path / "model"), items, images)
    for animal in HOLDOUT:
        mine = np.array([it.animal == animal for it in items])
        assert (overlap[mine] >= 0.7).mean() >= 0.9, (animal, np.sort(overlap[mine])[:5])
        assert meta["metrics"]["per_animal"][animal]["ap50"] >= 0.95


def test_the_folder_loads_with_its_weights_and_stamp(clips, fold, one_thread):
    model, _, _ = fold
    meta = json.loads((model / META).read_text())
    assert meta["classes"] == ["face"] and meta["settings"] == {**asdict(Settings()), "epochs": 8, "image_size": 112}
    assert meta["code"]["ratspain_bench"] and meta["code"]["detector_py_sha256"]
    detector = load(model)
    assert detector.stamp()["weights_sha256"] == meta["weights_sha256"]
    assert sorted(p.name for p in model.parent.iterdir()) == ["model", "runs"]  # no temporary folder left
    images = _held_out(clips)[1][:3]
    assert all(f is not None and 0.5 <= f[4] < 1 for f in detector.detect(images))
    strict = load(model, min_score=1.0)  # FCOS keeps scores above the threshold: none is
    assert strict.stamp()["min_score"] == 1.0 and strict.detect(images) == [None] * 3


def test_frames_finds_each_face_with_the_detector(clips, fold, tmp_path, capsys, one_thread):
    """`frames --faces detector:MODEL` on a held-out animal's clip: every frame examined gets the detector's box (the
    square around it) in quality.csv, the kept frames carry it, and it overlaps the true face; a rerun reuses them."""
    import pandas as pd

    from ratspain_bench.video.faces import iou

    model, _, _ = fold
    video = clips.parent / "videos" / "control3_pre.mp4"
    args = ["frames", str(video), "--faces", f"detector:{model}", "--per-minute", "60", "--out", str(tmp_path / "f"), "--quiet"]
    assert main(args) == 0
    q = pd.read_csv(tmp_path / "f" / "quality.csv", dtype=str, keep_default_na=False)
    truth = {it.frame: it.box for it in read_coco(clips) if it.entry["video"] == "videos/control3_pre.mp4"}
    assert len(q) == len(truth) == 16 and (q["box_x"] != "").all()  # 2 fps: every frame examined, a face in each
    found = q[["box_x", "box_y", "box_w", "box_h"]].to_numpy(float)
    assert np.allclose(found[:, 2], found[:, 3])  # the square around the detector's box
    overlap = iou(found, np.array([truth[int(f)] for f in q["frame"]]))
    assert (overlap >= 0.5).mean() >= 0.9, np.sort(overlap)[:5]
    m = pd.read_csv(tmp_path / "f" / "manifest.csv")
    assert len(m) >= 4 and m["scorable"].all() and set(m["time_s"]) <= set(q["time_s"].astype(float))
    assert "control3_pre.mp4: 16 frames examined" in capsys.readouterr().out
    done = (tmp_path / "f" / "frames" / "control3_pre" / "done.json").stat().st_mtime_ns
    assert main(args) == 0 and (tmp_path / "f" / "frames" / "control3_pre" / "done.json").stat().st_mtime_ns == done


def test_the_mlflow_run_has_the_metrics_and_the_folder(fold):
    from mlflow.tracking import MlflowClient

    model, _, uri = fold
    meta = json.loads((model / META).read_text())
    client = MlflowClient(uri)
    run = client.get_run(meta["mlflow_run"])
    assert client.get_experiment(run.info.experiment_id).name == "ratspain-detector" and run.info.status == "FINISHED"
    for animal in HOLDOUT:
        for k in ("ap50", "mean_iou", "iou70"):
            assert run.data.metrics[f"{animal}.{k}"] == pytest.approx(meta["metrics"]["per_animal"][animal][k])
    assert run.data.params["holdout"] == ",".join(HOLDOUT) and run.data.params["epochs"] == "8"
    assert sorted(f.path for f in client.list_artifacts(run.info.run_id, "detector")) == [f"detector/{META}", f"detector/{WEIGHTS}"]


def test_predict_writes_coco_boxes_and_scores_them(clips, fold, tmp_path, capsys, one_thread):
    model, _, _ = fold
    assert main(["detector", "predict", str(model), "--boxes", str(clips), "--out", str(tmp_path / "found.json")]) == 0
    printed = capsys.readouterr().out
    coco = json.loads((tmp_path / "found.json").read_text())
    truth = json.loads(clips.read_text())
    assert coco["images"] == truth["images"] and coco["categories"] == [{"id": 1, "name": "face"}]
    items, images = _held_out(clips)
    found = load(model).detect(images)
    by_image = {a["image_id"]: a for a in coco["annotations"]}
    for it, f in zip(items, found):
        assert by_image[it.id]["bbox"] == pytest.approx(f[:4], abs=0.01) and by_image[it.id]["score"] == pytest.approx(f[4], abs=1e-4)
    all_found = [(*a["bbox"], a["score"]) if (a := by_image.get(im["id"])) else None for im in truth["images"]]
    m = evaluate(all_found, [it.box for it in read_coco(clips)])
    assert f"AP@0.5 {m['ap50']:.3f}   mean IoU {m['mean_iou']:.3f}" in printed


def test_the_same_seed_gives_the_same_weights_and_boxes(clips, one_thread):
    items = read_coco(clips)[:16]
    pixels = load_images(items, lambda rgb: scaled(rgb, 64))
    boxes = [None, *(it.box for it in items[1:])]  # an image without a face trains too
    s = Settings(image_size=64, epochs=1)

    def trained(seed):
        d = FaceDetector(fit(boxes, pixels, replace(s, seed=seed)), s)
        return d.stamp()["weights_sha256"], d.detect_scaled(pixels)

    a, b, c = trained(0), trained(0), trained(1)
    assert a == b
    assert a[0] != c[0]


# ---------------------------------------------------------------- metrics


def test_average_precision_against_hand_computed_values():
    # ranked 0.9 hit, 0.8 miss, 0.7 hit, 0.6 miss over 3 faces: precision 1, 1/2, 2/3, 1/2 at recall 1/3, 1/3, 2/3, 2/3;
    # envelope 1, 2/3, 2/3, 1/2: AP = 1/3 x 1 + 1/3 x 2/3 = 5/9 (all-point interpolation)
    assert average_precision([0.6, 0.9, 0.7, 0.8], [False, True, True, False], 3) == pytest.approx(5 / 9)
    assert average_precision([0.9, 0.8], [True, True], 2) == pytest.approx(1.0)
    assert average_precision([0.9, 0.8], [False, True], 2) == pytest.approx(0.25)  # recall 1/2 at precision 1/2
    assert average_precision([], [], 2) == 0.0
    assert np.isnan(average_precision([0.5], [False], 0))


def test_iou_and_the_metrics_of_best_boxes():
    truth = [(0, 0, 10, 10), (0, 0, 10, 10), (0, 0, 10, 10), None]
    found = [(0, 0, 10, 5, 0.9), (5, 0, 10, 10, 0.8), None, (1, 1, 4, 4, 0.7)]
    # IoU 50/100 = 0.5, 50/150 = 1/3, 0 (none found); the box on the image without a face is a false positive
    m = evaluate(found, truth)
    assert m["images"] == 4 and m["faces"] == 3
    assert m["mean_iou"] == pytest.approx((0.5 + 1 / 3 + 0) / 3)
    assert m["iou70"] == 0.0
    assert m["ap50"] == pytest.approx(1 / 3)  # ranked: hit (0.9), miss, miss -> precision 1 at recall 1/3
    xyxy = torch.tensor([[0, 0, 10, 5], [5, 0, 15, 10]], dtype=torch.float64)
    assert np.diag(box_iou(xyxy, torch.tensor([[0, 0, 10, 10]] * 2, dtype=torch.float64)).numpy()) == pytest.approx([0.5, 1 / 3])
    assert evaluate([(0, 0, 10, 10, 0.5)], [(0, 0, 10, 10)])["iou70"] == 1.0


# ---------------------------------------------------------------- reading COCO, and its errors


def _coco(tmp_path, annotations, images=None, files=("cage1/a.png", "cage2/b.png")):
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((40, 60, 3), 128, np.uint8)).save(tmp_path / name)
    images = images or [{"id": i + 1, "file_name": n, "width": 60, "height": 40} for i, n in enumerate(("cage1/a.png", "cage2/b.png"))]
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "face"}]}))
    return path


def _box(id_, image_id, bbox):
    return {"id": id_, "image_id": image_id, "category_id": 1, "bbox": bbox}


def test_coco_boxes_and_the_animal_of_each_image(tmp_path):
    path = _coco(tmp_path, [_box(7, 1, [10, 5, 20, 20]), _box(8, 2, [-0.5, 0, 60.8, 40])])
    a, b = read_coco(path)
    assert (a.animal, a.box, b.animal) == ("cage1", (10.0, 5.0, 20.0, 20.0), "cage2")
    assert b.box == (0.0, 0.0, 60.0, 40.0)  # within 1 px of the image: cut to it
    assert [it.animal for it in read_coco(path, animal=r"/(\w)\.png")] == ["a", "b"]
    images = [{"id": 1, "file_name": "cage1/a.png", "width": 60, "height": 40, "animal": "rat9"},
              {"id": 2, "file_name": "b.png", "width": 60, "height": 40}]
    a, b = read_coco(_coco(tmp_path, [], images, files=("cage1/a.png", "b.png")))
    assert (a.animal, a.box, b.animal, b.box) == ("rat9", None, "", None)
    assert [im.shape for im in load_images([a, b])] == [(40, 60, 3)] * 2


def test_video_frames_are_images_of_the_coco_file(clips):
    items = read_coco(clips)
    assert len({it.animal for it in items}) == 6 and all(it.frame is not None for it in items)
    first = [it for it in items if it.path.name == "control1_pre.mp4"][:3]
    images = load_images(first)
    assert [im.shape for im in images] == [(120, 160, 3)] * 3 and not np.array_equal(images[0], images[1])


@pytest.mark.parametrize("annotations,images,message", [
    ([_box(7, 1, [50, 5, 20, 20])], None, "annotation 7: box [50.0, 5.0, 20.0, 20.0] outside image 1 (60x40)"),
    ([_box(7, 1, [10, 5, 0, 20])], None, "annotation 7: box [10.0, 5.0, 0.0, 20.0] outside image 1"),
    ([_box(7, 99, [10, 5, 20, 20])], None, "annotation 7: no image 99"),
    ([_box(7, 1, [10, 5, 20, 20]), _box(8, 1, [1, 1, 5, 5])], None, "annotation 8: image 1 has a second box"),
    ([_box(7, 1, [10, 5, 20])], None, "annotation 7: ValueError"),
    ([], [{"id": 3, "file_name": "cage1/gone.png", "width": 60, "height": 40}], "image 3: no file"),
    ([], [{"id": 3, "file_name": "cage1/a.png", "height": 40}], "image 3: KeyError 'width'"),
])
def test_bad_boxes_are_one_line_naming_the_file_and_id(tmp_path, annotations, images, message):
    path = _coco(tmp_path, annotations, images)
    with pytest.raises(InputError) as e:
        read_coco(path)
    assert str(e.value).startswith(f"{path}: {message}") and "\n" not in str(e.value)


def test_not_json_and_a_wrong_size(tmp_path):
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(InputError, match=r"x\.json: not a COCO JSON file"):
        read_coco(tmp_path / "x.json")
    images = [{"id": 1, "file_name": "cage1/a.png", "width": 80, "height": 40}]
    with pytest.raises(InputError, match="image 1 is 60x40, its COCO entry says 80x40"):
        load_images(read_coco(_coco(tmp_path, [], images)))


def test_the_cli_exits_2_and_writes_nothing(tmp_path, capsys):
    path = _coco(tmp_path, [_box(7, 1, [50, 5, 20, 20])])
    runs = tmp_path / "runs"
    assert main(["detector", "train", "--boxes", str(path), "--out", str(tmp_path / "m"), "--runs-dir", str(runs)]) == 2
    assert main(["detector", "predict", str(tmp_path), "--images", str(tmp_path), "--out", str(tmp_path / "f.json")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"error: {path}: annotation 7: box") and "not a face detector model" in err[1] and len(err) == 2
    assert not (tmp_path / "m").exists() and not runs.exists() and not (tmp_path / "f.json").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
