"""The public/private split of a hosted board's images (`server split --data DIR --public 0.5`).

Drawn per rat and per label from a seed the operating system gives (`secrets.randbits`), kept as `synth --hidden`
keeps its seed: in a file of `paths.secrets_dir()` readable by its owner alone, never in the data folder or the
database. The database holds the public images' keys (what workers need). During the public phase every run uses
the public images only; the private ones reach code once, in `server finalize`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import secrets

import numpy as np

from ..errors import InputError
from ..paths import atomic_write_text, secrets_dir


def draw(dataset, public: float, seed: int) -> list[str]:
    """The public images' ids: in each (subject, label) group, round(public * n) of them (at least one on each side
    where the group has two or more), chosen by `seed`."""
    rng = np.random.default_rng(seed)
    t = dataset.table
    chosen = []
    for _, group in t.groupby(["subject", "label"], sort=True):
        ids = sorted(group["image"].astype(str))
        n = len(ids)
        k = int(round(public * n))
        if n >= 2:
            k = min(max(k, 1), n - 1)
        chosen += [ids[i] for i in sorted(rng.permutation(n)[:k])]
    return sorted(chosen)


def subset(dataset, ids, suffix: str):
    """The dataset restricted to the images `ids` (a phase's data), under a name of its own."""
    keep = dataset.table["image"].astype(str).isin(set(ids)).to_numpy()
    return dataclasses.replace(dataset, name=f"{dataset.name}-{suffix}", table=dataset.table[keep].reset_index(drop=True))


def near_duplicates(dataset, ids) -> list[tuple[str, str, int]]:
    """(public image, private image, distance) pairs `data check`'s detector calls near-identical."""
    from ..data.check import image_problems, near_duplicate_pairs

    _, rows, dh, ph = image_problems(dataset.table)
    images = dataset.table["image"].astype(str).to_numpy()[rows]
    public = set(ids)
    halves = np.array([img in public for img in images])
    return [(images[a], images[b], d) if halves[a] else (images[b], images[a], d)
            for a, b, d in near_duplicate_pairs(dh, ph, halves)]


def make(dataset, public: float) -> dict:
    """A new split: its seed written to the secrets folder; returns what the database keeps."""
    if not 0 < public < 1:
        raise InputError(f"--public {public}: expected a fraction between 0 and 1 (the paper's protocol uses every image: 0.5 is usual)")
    seed = secrets.randbits(63)
    ids = draw(dataset, public, seed)
    folder = secrets_dir()
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    path = folder / f"split-{dataset.fingerprint}.json"
    atomic_write_text(path, json.dumps({"dataset": dataset.name, "fingerprint": dataset.fingerprint, "public": public, "seed": seed}))
    os.chmod(path, 0o600)
    return {"public": public, "ids": ids, "seed_file": str(path), "n_public": len(ids), "n_private": len(dataset) - len(ids)}
