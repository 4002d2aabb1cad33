"""Scoring new images with a loaded method, in batches: memory stays flat however many images there are.

Each batch is read and decoded by a thread pool while the previous one is scored (at most two batches in
memory), exactly as the benchmark decodes its dataset (`data.cache.decode`: RGB, the whole image resized
to the method's image_size), so a saved model sees a new image as its method saw the training images.
A file that cannot be read or decoded (missing, truncated, not an image) gets its error in the `error`
column and the others are scored. Each batch reaches the method in a secret random order and its
predictions are put back in input order (`evaluation.blind`), as a fold's test set does.
"""
from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from ..data.cache import decode
from ..evaluation import blind
from ..methods.base import TestSet
from .inputs import Item

COLUMNS = ("image", "pain_probability", "pain")


def read_image(path: Path, size: int) -> tuple[str, np.ndarray]:
    """(content key, decoded image) of one file: its bytes are read once for both. A file that is no image: an error
    naming the file."""
    from PIL import UnidentifiedImageError

    data = Path(path).read_bytes()
    try:
        return hashlib.sha1(data).hexdigest()[:20], decode(io.BytesIO(data), size)
    except UnidentifiedImageError:
        raise ValueError(f"{Path(path).name}: not an image PIL can read") from None


def _one_line(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _yield_cpu() -> None:
    """Decoding threads run at a lower priority (Linux: per thread), so they use the cores the method leaves idle."""
    import threading

    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass


def decoded_batches(items: list[Item], size: int, batch_size: int) -> Iterator[list[tuple[Item, object]]]:
    """Batches of (item, (key, image) or the error text), the next batch decoding while this one is used. The first
    batch is an eighth of the others, so scoring starts after a short decode rather than a whole batch's."""
    first = min(batch_size, max(16, batch_size // 8))
    starts = [0, *range(first, len(items), batch_size)] if items else []
    with ThreadPoolExecutor(min(4, os.cpu_count() or 1), initializer=_yield_cpu) as pool:
        ahead = None
        for start, end in zip(starts, [*starts[1:], len(items)]):
            chunk = items[start:end]
            futures = [pool.submit(read_image, it.path, size) for it in chunk]
            if ahead is not None:
                yield _resolve(*ahead)
            ahead = (chunk, futures)
        if ahead is not None:
            yield _resolve(*ahead)


def _resolve(chunk, futures) -> list[tuple[Item, object]]:
    out = []
    for it, f in zip(chunk, futures):
        try:
            out.append((it, f.result()))
        except Exception as e:  # any failure to read one file is that row's error, never the batch's
            out.append((it, _one_line(e)))
    return out


def score_batches(method, items: list[Item], size: int, batch_size: int, explain: Path | None = None,
                  progress=None) -> Iterator[pd.DataFrame]:
    """One frame per batch: image, pain_probability, pain, au_<name> (when the method grades AUs), error,
    and with `explain` the path of each image's attention picture. `progress(n, total)` after each batch."""
    row = 0
    for batch in decoded_batches(items, size, batch_size):
        ok = [i for i, (_, r) in enumerate(batch) if not isinstance(r, str)]
        frame = pd.DataFrame({"image": [it.image for it, _ in batch], "pain_probability": np.nan,
                              "pain": pd.array([pd.NA] * len(batch), dtype="Int64")})
        pred = None
        if ok:
            test = TestSet(np.stack([batch[i][1][1] for i in ok]), np.full(len(ok), ""), tuple(batch[i][1][0] for i in ok))
            shuffled, order = blind.shuffle(test)
            pred = blind.restore(method.predict(shuffled), order)
            frame.loc[ok, "pain_probability"] = np.round(np.asarray(pred.scores, dtype=float), 6)
            frame.loc[ok, "pain"] = np.asarray(pred.labels).astype(int)
            for name, grades in (pred.au or {}).items():
                frame[f"au_{name}"] = pd.array([pd.NA] * len(batch), dtype="Int64")
                frame.loc[ok, f"au_{name}"] = np.asarray(grades).astype(int)
        frame["error"] = [r if isinstance(r, str) else "" for _, r in batch]
        if explain is not None:
            frame["explain"] = ""
            if ok:
                names = [f"{row + i:06d}_{Path(batch[i][0].image).stem}" for i in ok]
                frame.loc[ok, "explain"] = [str(p) for p in method.explain(test, pred, names, explain)]
        row += len(batch)
        if progress is not None:
            progress(len(batch), len(items))
        yield frame
