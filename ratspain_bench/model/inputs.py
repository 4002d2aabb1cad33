"""What `predict` scores: image files, folders (recursive), manifests (a CSV with a `path` column), or a
DataFrame with a `path` column, expanded into one `Item` per image in a stable order.

A malformed input (a path that does not exist, a manifest without `path`, a row with an empty path) is an
InputError naming the file and row; an image that cannot be read is not: it gets a row-level error later.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import InputError, where

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Item:
    image: str  # the id printed in the `image` column: the path as given (a manifest's `path` value)
    path: Path  # the file to read


def walk(folder: Path) -> list[Item]:
    """Image files under `folder`, recursively, sorted; hidden files and folders skipped."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                p = Path(root) / name
                out.append(Item(str(p), p))
    return out


def read_manifest(path: Path) -> list[Item]:
    """Rows of a manifest CSV: `path` (relative to the manifest's folder) required, other columns ignored."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    if "path" not in header:
        raise InputError(f"{where(path, 1)}: a manifest needs a `path` column (header: {','.join(header)})")
    reader.fieldnames = header
    items = []
    for row in reader:
        value = (row.get("path") or "").strip()
        if not value:
            raise InputError(f"{where(path, reader.line_num)}: empty path")
        items.append(Item(value, path.parent / value))
    return items


def expand(inputs) -> list[Item]:
    """Items of a path, a list of paths, or a DataFrame with a `path` column; InputError when there are none."""
    if isinstance(inputs, pd.DataFrame):
        if "path" not in inputs.columns:
            raise InputError(f"a DataFrame to score needs a `path` column (columns: {', '.join(map(str, inputs.columns))})")
        return [Item(str(p), Path(str(p))) for p in inputs["path"]]
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    items = []
    for given in inputs:
        p = Path(given).expanduser()
        if p.is_dir():
            found = walk(p)
            if not found:
                raise InputError(f"{p}: no images found (looked recursively for {', '.join(IMAGE_SUFFIXES)})")
            items += found
        elif p.suffix.lower() == ".csv" and p.is_file():
            items += read_manifest(p)
        elif p.is_file():
            items.append(Item(str(given), p))
        else:
            raise InputError(f"{p}: no such file or directory")
    if not items:
        raise InputError("no images to score")
    return items
