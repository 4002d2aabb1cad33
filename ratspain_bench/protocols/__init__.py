"""Evaluation protocols: how a dataset is cut into folds. Each is one module of this package defining a `Protocol`
subclass with a `name`; `get_protocol("NAME[:ARG]")` finds it, as `get_method` finds a method.

- `loro` (the default, the paper's): leave-one-rat-out;
- `pose-shift[:BINS]`: LORO trained on frontal faces only, scored on every pose bin (the paper's pose claim);
- `leave-one-group-out:COLUMN`: one fold per value of a manifest column (site, strain, camera, session).

A protocol is part of every result's identity (`JobKey.protocol`, the `ratspain.protocol` tag): results of two
protocols never mix. The docs' Protocols page says what each one answers.
"""
from __future__ import annotations

import importlib
import pkgutil

from ..errors import InputError
from .base import (
    PROTOCOL_VERSION,
    Fold,
    Protocol,
    fold_digest,
    leave_one_group_out,
    leave_one_subject_out,
)

__all__ = ["PROTOCOL_VERSION", "Fold", "Protocol", "fold_digest", "get_protocol", "leave_one_group_out",
           "leave_one_subject_out", "protocols"]
DEFAULT = "loro"


def protocols() -> dict[str, type[Protocol]]:
    """Every protocol class of this package, by name."""
    out = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Protocol) and obj.name and obj.__module__ == module.__name__:
                out[obj.name] = obj
    return dict(sorted(out.items()))


def describe() -> list[dict]:
    """Each protocol: `name`, `usage` (how `--protocol` names it), `question` (what it answers), `takes`."""
    return [{"name": c.name, "usage": c.usage or c.name, "question": c.question, "takes": c.takes} for c in protocols().values()]


def get_protocol(spec: str | Protocol | None = None) -> Protocol:
    """`loro`, `pose-shift`, `pose-shift:frontal+moderate`, `leave-one-group-out:site` (None: the default)."""
    if isinstance(spec, Protocol):
        return spec
    name, _, arg = (spec or DEFAULT).strip().partition(":")
    known = protocols()
    if name not in known:
        raise InputError(f"protocol {spec!r}: expected one of {', '.join(c.usage or c.name for c in known.values())}")
    cls = known[name]
    if arg and not cls.takes:
        raise InputError(f"protocol {name} takes no argument (given {arg!r})")
    return cls(arg)
