"""The dataset card: a Croissant 1.1 description (`croissant.json`, JSON-LD) of a replica folder.

`synth` writes one beside the manifest: the record set of the manifest's columns (each a field read from
its column, typed), the manifest and the image files as the distribution, the licence, the paper to cite,
and what the data is: synthetic, by which renderer, from which seed (or that the seed is hidden).
`data check` validates a folder's card with `mlcroissant` (`data.check.card_problems`): a card that does not
load, or whose fields or manifest checksum no longer match the manifest, is reported naming the file.
"""
from __future__ import annotations

import csv
import hashlib
import json
from datetime import date
from pathlib import Path

CARD = "croissant.json"
CONFORMS_TO = "http://mlcommons.org/croissant/1.1"
LICENCE = "https://spdx.org/licenses/CC-BY-4.0.html"
CITATION = ("PainSeeker: a head pose-invariant deep learning method for assessing rat's pain by facial expressions "
            "(the RatsPain dataset, https://github.com/xhzongyuan/RatsPain). This folder is a synthetic replica of "
            "its label counts, not its images.")
CONTEXT = {  # what mlcroissant writes for Croissant 1.1
    "@language": "en", "@vocab": "https://schema.org/", "citeAs": "cr:citeAs", "column": "cr:column",
    "conformsTo": "dct:conformsTo", "cr": "http://mlcommons.org/croissant/", "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"}, "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/", "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"}, "extract": "cr:extract", "field": "cr:field",
    "fileProperty": "cr:fileProperty", "fileObject": "cr:fileObject", "fileSet": "cr:fileSet", "format": "cr:format",
    "includes": "cr:includes", "isLiveDataset": "cr:isLiveDataset", "jsonPath": "cr:jsonPath", "key": "cr:key",
    "md5": "cr:md5", "parentField": "cr:parentField", "path": "cr:path", "recordSet": "cr:recordSet",
    "references": "cr:references", "regex": "cr:regex", "repeated": "cr:repeated", "replace": "cr:replace",
    "samplingRate": "cr:samplingRate", "sc": "https://schema.org/", "separator": "cr:separator", "source": "cr:source",
    "subField": "cr:subField", "transform": "cr:transform"}
DESCRIPTIONS = {
    "path": "image path, relative to the manifest's folder", "subject": "animal id; leave-one-rat-out leaves one out per fold",
    "level": "Rat Grimace Scale image level: 0 no pain, 1 moderate, 2 severe (blank: low confidence)",
    "label": "binary label: 1 pain (level >= 1), 0 no pain (blank: low confidence)",
    "confidence": "high: three or four AUs accepted by the two-stage rating; low: fewer (no label, as in the paper)",
    "pose_yaw": "head yaw in degrees", "pose_pitch": "head pitch in degrees", "pose_roll": "head roll in degrees",
    "pose_bin": "frontal (|yaw| < 15), moderate (< 40) or extreme",
}


def _type(column: str) -> str:
    if column in ("path", "subject", "confidence", "pose_bin"):
        return "sc:Text"
    return "sc:Float" if column.startswith("pose_") else "sc:Integer"


def _describe(column: str) -> str:
    if column.startswith("au_"):
        return f"consensus grade 0/1/2 of the action unit {column[3:]} (blank when none was accepted)"
    if column.startswith("rater_"):
        return "one rater's grade 0/1/2 of one action unit (blank: uncertain, or not asked in stage two)"
    return DESCRIPTIONS.get(column, column)


def card(folder: Path, provenance: dict, name: str | None = None) -> dict:
    """The Croissant description of the replica in `folder` (its manifest already written); `provenance` as `synth`
    writes it (`seed` absent for a hidden replica)."""
    folder = Path(folder)
    manifest = folder / "manifest.csv"
    with open(manifest, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    seed = provenance.get("seed")
    made = (f"rendered from seed {seed}: anyone can render it again, so its labels are public" if seed is not None
            else "rendered from a seed drawn from the operating system and kept outside this folder: its labels are not public")
    description = (f"Synthetic replica of the RatsPain dataset (ratspain_bench replica v{provenance['replica_version']}, "
                   f"{provenance['size']} px faces): stylised rat faces whose four Rat Grimace Scale action units drive the "
                   f"drawing, graded by simulated raters with the paper's two-stage rule; {made}. Not real animals.")
    fields = [{"@type": "cr:Field", "@id": f"faces/{c}", "name": c, "description": _describe(c), "dataType": _type(c),
               "source": {"fileObject": {"@id": "manifest.csv"}, "extract": {"column": c}}} for c in header]
    return {
        "@context": CONTEXT, "@type": "sc:Dataset", "conformsTo": CONFORMS_TO, "name": name or folder.name,
        "description": description, "citeAs": CITATION, "license": LICENCE, "url": "https://github.com/xhzongyuan/RatsPain",
        "version": f"{provenance['replica_version']}.0.0", "datePublished": date.today().isoformat(), "keywords": ["rat grimace scale", "pain", "synthetic"],
        "distribution": [
            {"@type": "cr:FileObject", "@id": "manifest.csv", "name": "manifest.csv", "contentUrl": "manifest.csv",
             "encodingFormat": "text/csv", "sha256": hashlib.sha256(manifest.read_bytes()).hexdigest()},
            {"@type": "cr:FileSet", "@id": "images", "name": "images", "encodingFormat": "image/jpeg", "includes": "images/*/*.jpg"}],
        "recordSet": [{"@type": "cr:RecordSet", "@id": "faces", "name": "faces",
                       "description": "one record per image: the manifest's columns", "field": fields}],
    }


def write_card(folder: Path, provenance: dict, name: str | None = None) -> Path:
    path = Path(folder) / CARD
    path.write_text(json.dumps(card(folder, provenance, name), indent=1) + "\n", encoding="utf-8")
    return path
