"""The dataset card: `synth` writes a Croissant 1.1 file that mlcroissant loads and reads back as the manifest's
records; `data check` validates a folder's card."""
import csv
import json

import pytest

import ratspain_bench as rb
from ratspain_bench.data.check import check_dataset

mlc = pytest.importorskip("mlcroissant")
COUNTS = {"a": {"no_pain": 3, "moderate": 3}, "b": {"no_pain": 2, "moderate": 3, "severe": 1}}


@pytest.fixture
def replica(tmp_path):
    return rb.synth(tmp_path / "replica", seed=5, size=32, counts=COUNTS, low_confidence=2).parent


def test_synth_writes_a_croissant_card_that_reads_back_as_the_manifest(replica):
    ds = mlc.Dataset(jsonld=replica / "croissant.json")
    assert not ds.metadata.ctx.issues.errors
    card = json.loads((replica / "croissant.json").read_text())
    assert card["conformsTo"] == "http://mlcommons.org/croissant/1.1"
    assert "CC-BY-4.0" in card["license"] and "PainSeeker" in card["citeAs"]
    assert "Synthetic" in card["description"] and "seed 5" in card["description"]
    rows = list(csv.DictReader(open(replica / "manifest.csv", newline="")))
    assert [f["name"] for f in card["recordSet"][0]["field"]] == list(rows[0])
    records = list(ds.records("faces"))
    assert len(records) == len(rows) == 6 + 6 + 2
    for rec, row in zip(records, rows):
        assert rec["faces/path"].decode() == row["path"] and rec["faces/subject"].decode() == row["subject"]
        assert rec["faces/level"] == (int(row["level"]) if row["level"] else None)
        assert rec["faces/pose_yaw"] == pytest.approx(float(row["pose_yaw"]))


def test_a_hidden_replica_card_names_no_seed(tmp_path, monkeypatch):
    monkeypatch.setenv("RATSPAIN_SECRETS_DIR", str(tmp_path / "secrets"))
    folder = rb.synth(tmp_path / "hidden", size=32, counts=COUNTS, hidden=True).parent
    (kept,) = (tmp_path / "secrets").iterdir()
    seed = json.loads(kept.read_text())["seed"]
    text = (folder / "croissant.json").read_text()
    assert "not public" in text and str(seed) not in text


def test_data_check_validates_the_card(replica):
    assert not [p for p in check_dataset(replica) if "croissant" in p.where]
    card = json.loads((replica / "croissant.json").read_text())
    card["recordSet"][0]["field"].pop()
    (replica / "croissant.json").write_text(json.dumps(card))
    (problem,) = [p for p in check_dataset(replica) if "croissant" in p.where]
    assert problem.severity == "error" and "not the manifest's columns" in problem.message
    (replica / "croissant.json").write_text("{not json")
    (problem,) = [p for p in check_dataset(replica) if "croissant" in p.where]
    assert problem.severity == "error" and "not a valid Croissant file" in problem.message


def test_data_check_warns_when_the_manifest_changed_after_the_card(replica):
    text = (replica / "manifest.csv").read_text()
    (replica / "manifest.csv").write_text(text + "\n")  # edited after synth wrote the card
    (problem,) = [p for p in check_dataset(replica) if "croissant" in p.where]
    assert problem.severity == "warning" and "sha256" in problem.message
