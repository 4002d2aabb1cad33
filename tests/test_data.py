"""Dataset forms, `data check` (every bad-input case with its message) and its exit codes."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ratspain_bench.cli import main
from ratspain_bench.data.check import HASH_THRESHOLD, check_dataset, near_duplicate_pairs, perceptual_hashes
from ratspain_bench.data.dataset import read_dataset
from ratspain_bench.data.imbalance import subject_counts

MICE_JSON = Path("/work/shared/datasets/whitefurredmice/eyes_detection_data.json")
HEADER = "path,subject,level,label,confidence"


def face(seed: int, size: int = 64) -> Image.Image:
    """A distinct smooth random picture (coarse noise blown up), unlike any other seed's."""
    rng = np.random.default_rng(seed)
    coarse = (rng.random((6, 6, 3)) * 255).astype(np.uint8)
    return Image.fromarray(coarse).resize((size, size), Image.BICUBIC)


def make_dataset(root: Path, rows=None, fmt: str = "png") -> Path:
    """A manifest dataset: by default 2 subjects x (2 no pain + 2 pain), one distinct image each."""
    if rows is None:
        rows = [(f"images/{s}_{i}.{fmt}", s, lv) for s in ("1", "2") for i, lv in enumerate((0, 0, 1, 2))]
    root.mkdir(parents=True, exist_ok=True)
    lines = ["path,subject,level"]
    for k, (path, subject, level) in enumerate(rows):
        f = root / path
        if not f.exists():
            f.parent.mkdir(parents=True, exist_ok=True)
            face(1000 + k).save(f)
        lines.append(f"{path},{subject},{level}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


def messages(problems, severity="error"):
    return [f"{p.where}: {p.message}" for p in problems if p.severity == severity]


def run_cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# ---------------------------------------------------------------- the good case and the --data forms


def test_clean_dataset_has_no_problems(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds")
    assert check_dataset(root) == []
    rc, out, err = run_cli(capsys, "data", "check", "--data", str(root))
    assert rc == 0, out + err
    assert out.strip().splitlines()[-1].endswith("8 images, 2 subjects; 0 error(s), 0 warning(s): usable")


def test_manifest_dir_and_csv_path_read_the_same(tmp_path):
    root = make_dataset(tmp_path / "ds")
    a, pa = read_dataset(root)
    b, pb = read_dataset(root / "manifest.csv")
    assert pa == pb == []
    assert a.table["image"].tolist() == b.table["image"].tolist()
    assert a.subjects == ["1", "2"] and a.labels.tolist() == [0, 0, 1, 1] * 2
    assert a.table["level"].tolist() == [0, 0, 1, 2] * 2


def test_folder_tree(tmp_path):
    root = tmp_path / "tree"
    k = 0
    for subject in ("ratA", "ratB"):
        for level in ("0", "moderate", "2"):
            d = root / subject / level
            d.mkdir(parents=True)
            for ext in ("png", "jpg"):
                face(k).convert("RGB").save(d / f"img{k}.{ext}")
                k += 1
    ds, problems = read_dataset(root)
    assert problems == []
    assert len(ds) == 12 and ds.subjects == ["ratA", "ratB"]
    assert subject_counts(ds)["ratA"] == {"no_pain": 2, "moderate": 2, "severe": 2, "pain": 4, "total": 6}
    assert check_dataset(root) == []


def test_folder_tree_unknown_level_folder(tmp_path):
    root = tmp_path / "tree"
    for subject in ("a", "b"):
        for level in ("0", "1"):
            (root / subject / level).mkdir(parents=True)
            face(hash((subject, level)) % 1000).save(root / subject / level / "x.png")
    (root / "a" / "mild").mkdir()
    errors = messages(check_dataset(root))
    assert len(errors) == 1 and "unknown level folder 'mild'" in errors[0] and errors[0].startswith(str(root / "a" / "mild"))


def test_json_labels_only_counts_whitefurredmice(capsys):
    ds, problems = read_dataset(MICE_JSON)
    assert not ds.has_images and [p for p in problems if p.severity == "error"] == []
    counts = subject_counts(ds)
    expected = {"1": (97, 36, 49), "2": (85, 15, 15), "3": (68, 87, 13), "4": (47, 104, 44),
                "5": (109, 63, 12), "6": (89, 16, 43), "7": (27, 11, 15), "8": (30, 10, 2)}  # SOURCE.md
    assert {s: (c["no_pain"], c["moderate"], c["severe"]) for s, c in counts.items()} == expected
    assert sum(c["total"] for c in counts.values()) == 1087
    problems = check_dataset(MICE_JSON)
    assert [p.severity for p in problems] == ["info"]
    assert "labels only" in problems[0].message and "skipped" in problems[0].message
    rc, out, _ = run_cli(capsys, "data", "check", "--data", str(MICE_JSON))
    assert rc == 0
    assert out.splitlines()[0].startswith("info: ") and "1087 images, 8 subjects" in out


def test_json_with_images_beside_it(tmp_path):
    data = {}
    for k, (subject, grimace) in enumerate([("1", "0"), ("1", "2"), ("2", "0"), ("2", "1")]):
        face(k).save(tmp_path / f"animalImage_{k}.png")
        data[f"animalImage_{k}.png"] = [{"AnimalNumber": subject, "GrimaceScale": grimace}]
    data["animalImage_9.png"] = [{"AnimalNumber": "2", "GrimaceScale": "1"}]  # no such file
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data, indent=4))
    ds, _ = read_dataset(path)
    assert ds.has_images and len(ds) == 5
    errors = messages(check_dataset(path))
    assert len(errors) == 1 and "image not found: animalImage_9.png" in errors[0]
    assert errors[0].startswith(f"{path}:")


def test_bad_json(tmp_path, capsys):
    bad = tmp_path / "ann.json"
    bad.write_text('{\n "a.png": [{"AnimalNumber": "1", "GrimaceScale": "0"}],\n "b.png": [\n}')
    errors = messages(check_dataset(bad))
    assert errors[0].startswith(f"{bad}:4: invalid JSON")
    bad.write_bytes(b"\xff\xfe\x00garbage")
    assert messages(check_dataset(bad))[0].startswith(f"{bad}: not UTF-8 text")
    rc, out, err = run_cli(capsys, "data", "check", "--data", str(bad))
    assert rc == 2 and err == ""


def test_json_unknown_grimace_scale(tmp_path):
    path = tmp_path / "ann.json"
    data = {f"{k}.png": [{"AnimalNumber": str(k % 2), "GrimaceScale": str(k % 3)}] for k in range(6)}
    data["4.png"][0]["GrimaceScale"] = "5"
    path.write_text(json.dumps(data, indent=2))
    errors = messages(check_dataset(path))
    assert errors == [f"{path}:26: 4.png: GrimaceScale '5' missing or unknown (expected 0, 1 or 2)"]


def test_low_confidence_rows_excluded_by_default(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds")
    text = (root / "manifest.csv").read_text().splitlines()
    text[0] += ",confidence"
    text[1:] = [line + (",low" if i == 0 else ",high") for i, line in enumerate(text[1:])]
    (root / "manifest.csv").write_text("\n".join(text) + "\n")
    assert len(read_dataset(root)[0]) == 7
    assert len(read_dataset(root, include_low_confidence=True)[0]) == 8
    rc, out, _ = run_cli(capsys, "data", "check", "--data", str(root))
    assert rc == 0 and "7 images, 1 low-confidence excluded" in out
    rc, out, _ = run_cli(capsys, "data", "check", "--data", str(root), "--include-low-confidence")
    assert rc == 0 and "8 images, 2 subjects" in out


# ---------------------------------------------------------------- bad inputs, one message each


def test_missing_image(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds")
    (root / "images" / "2_1.png").unlink()
    errors = messages(check_dataset(root))
    assert errors == [f"{root / 'manifest.csv'}:7: image not found: images/2_1.png"]
    rc, out, _ = run_cli(capsys, "data", "check", "--data", str(root))
    assert rc == 2
    assert f"error: {root / 'manifest.csv'}:7: image not found: images/2_1.png" in out.splitlines()
    assert out.splitlines()[-1].endswith("1 error(s), 0 warning(s): NOT usable")


def test_truncated_jpeg(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds", fmt="jpg")
    f = root / "images" / "1_2.jpg"
    face(7, size=128).convert("RGB").save(f, quality=95)
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    errors = messages(check_dataset(root))
    assert len(errors) == 1
    assert errors[0].startswith(f"{root / 'manifest.csv'}:4: truncated image")
    assert "images/1_2.jpg" in errors[0]
    rc, out, _ = run_cli(capsys, "data", "check", "--data", str(root))
    assert rc == 2 and "truncated image" in out


def test_truncated_png(tmp_path):
    root = make_dataset(tmp_path / "ds")
    f = root / "images" / "2_3.png"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    errors = messages(check_dataset(root))
    assert len(errors) == 1 and errors[0].startswith(f"{root / 'manifest.csv'}:9: truncated image")


def test_unreadable_image(tmp_path):
    root = make_dataset(tmp_path / "ds")
    (root / "images" / "1_0.png").write_text("this is not a picture")
    errors = messages(check_dataset(root))
    assert len(errors) == 1
    assert errors[0].startswith(f"{root / 'manifest.csv'}:2: unreadable image: cannot identify image file")


def test_unknown_level_and_label(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds")
    m = root / "manifest.csv"
    lines = m.read_text().splitlines()
    lines[0] = "path,subject,level,label"
    lines[1:] = [line + "," for line in lines[1:]]
    lines[2] = "images/1_1.png,1,3,"
    lines[3] = "images/1_2.png,1,,yes"
    lines[4] = "images/1_3.png,1,severe,"
    m.write_text("\n".join(lines) + "\n")
    errors = messages(check_dataset(root))
    assert errors == [
        f"{m}:3: unknown level '3' (expected 0, 1, 2, no_pain, moderate or severe)",
        f"{m}:4: unknown label 'yes' (expected 0 or 1)",
    ]
    rc, out, _ = run_cli(capsys, "data", "check", "--data", str(m))
    assert rc == 2 and f"error: {m}:3: unknown level '3'" in out


def test_label_contradicting_level(tmp_path):
    root = make_dataset(tmp_path / "ds")
    m = root / "manifest.csv"
    lines = m.read_text().splitlines()
    lines[0] += ",label"
    lines[1:] = [line + "," for line in lines[1:]]
    lines[1] = "images/1_0.png,1,0,1"
    m.write_text("\n".join(lines) + "\n")
    assert messages(check_dataset(root)) == [f"{m}:2: label 1 contradicts level 0 (label is level >= 1)"]


def test_missing_column(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds")
    m = root / "manifest.csv"
    m.write_text("path,level\nimages/1_0.png,0\n")
    errors = messages(check_dataset(root))
    assert errors[0] == f"{m}:1: missing column subject (header: path,level)"
    m.write_text("path,subject\nimages/1_0.png,1\n")
    assert messages(check_dataset(root))[0] == f"{m}:1: missing column level (or label) (header: path,subject)"
    rc, out, err = run_cli(capsys, "data", "check", "--data", str(root))
    assert rc == 2 and "missing column level (or label)" in out and err == ""


def test_duplicate_path(tmp_path):
    root = make_dataset(tmp_path / "ds")
    m = root / "manifest.csv"
    m.write_text(m.read_text() + "images/1_0.png,2,1\n")
    errors = messages(check_dataset(root))
    assert errors == [f"{m}:10: duplicate path images/1_0.png (first at {m}:2)"]


def test_one_class_subject_is_a_warning(tmp_path, capsys):
    rows = [(f"images/1_{i}.png", "1", lv) for i, lv in enumerate((0, 1, 2))]
    rows += [(f"images/2_{i}.png", "2", 0) for i in range(3)]
    root = make_dataset(tmp_path / "ds", rows)
    problems = check_dataset(root)
    assert messages(problems) == []
    assert messages(problems, "warning") == [f"{root / 'manifest.csv'}: subject 2 has one class only (no pain, 3 images)"]
    rc, out, _ = run_cli(capsys, "data", "check", "--data", str(root))
    assert rc == 0
    assert out.splitlines()[0] == f"warning: {root / 'manifest.csv'}: subject 2 has one class only (no pain, 3 images)"
    assert out.splitlines()[-1].endswith("0 error(s), 1 warning(s): usable")


def test_fewer_than_two_subjects_is_an_error(tmp_path, capsys):
    rows = [(f"images/1_{i}.png", "1", lv) for i, lv in enumerate((0, 1, 0, 2))]
    root = make_dataset(tmp_path / "ds", rows)
    assert messages(check_dataset(root)) == [
        f"{root / 'manifest.csv'}: 1 subject(s): leave-one-subject-out needs at least 2"]
    rc, _, _ = run_cli(capsys, "data", "check", "--data", str(root))
    assert rc == 2


def test_near_identical_image_under_two_subjects(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds", fmt="png")
    # subject 2's third image is subject 1's first, resized and re-encoded as JPEG: the same picture
    src = Image.open(root / "images" / "1_0.png").convert("RGB")
    src.resize((57, 57), Image.BILINEAR).save(root / "images" / "copy.jpg", quality=60)
    # an exact copy within the same subject is not leakage
    shutil.copy(root / "images" / "2_0.png", root / "images" / "2_0_again.png")
    m = root / "manifest.csv"
    lines = m.read_text().splitlines()
    lines[7] = "images/copy.jpg,2,1"
    lines.append("images/2_0_again.png,2,0")
    m.write_text("\n".join(lines) + "\n")
    errors = messages(check_dataset(root))
    assert len(errors) == 1, errors
    e = errors[0]
    assert e.startswith(f"{m}:8: near-identical image under two subjects: images/copy.jpg (subject 2) "
                        f"and images/1_0.png (subject 1) at {m}:2; leaks between LORO folds")
    rc, out, _ = run_cli(capsys, "data", "check", "--data", str(root))
    assert rc == 2 and sum("under two subjects" in line for line in out.splitlines()) == 1


def test_same_image_under_two_subjects_reported_once_per_pair(tmp_path):
    root = make_dataset(tmp_path / "ds")
    shutil.copy(root / "images" / "1_1.png", root / "images" / "2_1.png")
    errors = messages(check_dataset(root))
    assert len(errors) == 1
    assert errors[0].startswith(f"{root / 'manifest.csv'}:7: same image under two subjects: images/2_1.png (subject 2) "
                                f"and images/1_1.png (subject 1) at {root / 'manifest.csv'}:3")
    assert "distance 0" in errors[0]


def test_nonexistent_data_is_one_line_exit_2(tmp_path, capsys):
    rc, out, err = run_cli(capsys, "data", "check", "--data", str(tmp_path / "nope"))
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and "no such file or directory" in err


# ---------------------------------------------------------------- the perceptual hash itself


def test_hash_robust_to_reencoding_and_far_between_distinct_images(tmp_path):
    import io

    def hashes(im):
        return perceptual_hashes(im)

    def dist(a, b):
        return bin(a[0] ^ b[0]).count("1") + bin(a[1] ^ b[1]).count("1")

    close, far = [], []
    for k in range(20):
        im = face(k, size=96).convert("RGB")
        buf = io.BytesIO()
        im.resize((80, 80)).save(buf, "JPEG", quality=40)
        buf.seek(0)
        close.append(dist(hashes(im), hashes(Image.open(buf))))
        far.append(dist(hashes(im), hashes(face(k + 500, size=96))))
    assert max(close) <= HASH_THRESHOLD < min(far)


def test_near_duplicate_pairs_blocks_and_groups():
    rng = np.random.default_rng(0)
    d = rng.integers(0, 2**63, size=1200, dtype=np.uint64)
    p = rng.integers(0, 2**63, size=1200, dtype=np.uint64)
    d[1100], p[1100] = d[3], p[3] ^ np.uint64(0b101)  # distance 2, different groups, across blocks
    d[7], p[7] = d[5], p[5]  # distance 0, same group: not reported
    groups = np.array(["a" if i < 600 else "b" for i in range(1200)])
    groups[7] = groups[5]
    assert near_duplicate_pairs(d, p, groups, block=256) == [(3, 1100, 2)]


# ---------------------------------------------------------------- the default replica (when the generator exists)


@pytest.mark.slow
def test_replica_checks_clean_and_fast(tmp_path):
    import time

    synth = pytest.importorskip("ratspain_bench.data.synth")
    synth.generate_replica(tmp_path / "rep", seed=0, size=256)
    t = time.perf_counter()
    problems = check_dataset(tmp_path / "rep")
    elapsed = time.perf_counter() - t
    assert [p for p in problems if p.severity != "info"] == []
    assert elapsed < 10, f"data check took {elapsed:.1f} s"


def test_contact_sheet_one_row_per_subject(tmp_path, capsys):
    from tinydata import make_dataset

    data = make_dataset(tmp_path / "d", subjects=("a", "b", "c"), per_subject=6)
    out = tmp_path / "sheet.png"
    assert main(["data", "sheet", "--data", str(data), "--out", str(out), "--per-level", "2"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    with Image.open(out) as im:  # 3 levels x 2 faces per row at 1.1 in, 3 rows at 1.15 in, 100 dpi
        assert im.size == (660, 345)
    assert not list(tmp_path.glob(".*.tmp"))
