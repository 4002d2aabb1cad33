"""What a method may infer from the harness's bookkeeping: nothing. Test order and image keys.

- Order: every test set reaches its method in an order drawn from the operating system's randomness
  (`shuffle`), never the table's: a folder tree `SUBJECT/LEVEL/*.jpg` or a manifest sorted by label would
  otherwise hand the labels over as positions. The method's predictions are put back in table order
  (`restore`), so scores and files are exactly those of an unshuffled call for any method whose
  prediction of an image does not depend on the other images.
- Keys: an outside method sees each image's key as an HMAC-SHA256 of its content digest under a secret
  drawn once per harness process (`outside_keys`), so no key can be computed from a copy of the data.
  Within one run the same image has the same key in every fold; built-in methods keep the content
  digests, which key their feature caches.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import replace

import numpy as np

from ..methods.base import Predictions, TestSet

_SECRET = secrets.token_bytes(32)  # per harness process: never written anywhere


def permutation(n: int) -> np.ndarray:
    """A uniformly random order of n items, from the OS's randomness (not reproducible, by design)."""
    return np.random.default_rng(secrets.randbits(128)).permutation(n)


def shuffle(test: TestSet) -> tuple[TestSet, np.ndarray]:
    """The test set in a secret random order, and that order (`restore` undoes it)."""
    perm = permutation(len(test))
    meta = None if test.meta is None else test.meta.iloc[perm].reset_index(drop=True)
    return replace(test, images=np.asarray(test.images)[perm], subjects=np.asarray(test.subjects)[perm],
                   keys=tuple(test.keys[i] for i in perm), meta=meta), perm


def _back(values, perm: np.ndarray):
    """`values` (in shuffled order) in the original order; anything that is not one entry per image is left as it is
    (the predictions rules then say what is wrong with it)."""
    if values is None:
        return None
    arr = np.asarray(values)
    if arr.ndim == 0 or len(arr) != len(perm):
        return values
    out = np.empty_like(arr)
    out[perm] = arr
    return out


def restore(pred: Predictions, perm: np.ndarray) -> Predictions:
    """Predictions made on `shuffle`d test images, in the test set's own order."""
    per_au = lambda d: None if d is None else {k: _back(v, perm) for k, v in d.items()}  # noqa: E731
    au = per_au(pred.au) if isinstance(pred.au, dict) else pred.au
    au_attention = per_au(pred.au_attention) if isinstance(pred.au_attention, dict) else pred.au_attention
    return Predictions(_back(pred.labels, perm), _back(pred.scores, perm), _back(pred.attention, perm), au, au_attention)


def outside_keys(keys) -> tuple[str, ...]:
    """The keys an outside method sees: HMAC-SHA256 of each key under this process's secret (20 hex digits)."""
    return tuple(hmac.new(_SECRET, str(k).encode(), hashlib.sha256).hexdigest()[:20] for k in keys)
