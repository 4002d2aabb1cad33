"""The service's settings: `serve --config server.toml` (every key optional).

    quota_per_day = 5      # submissions a team may make per UTC day (resets at 00:00 UTC)
    quota_total = 100      # and in all
    time_limit = 1800      # seconds per fold of a submission (the sandbox's wall-clock limit)
    memory_mb = 8192       # per fold
    upload_mb = 20         # the archive
    unpacked_mb = 100      # its members, unpacked
    members = 500          # its members
    ratio = 100            # unpacked size / archive size, at most
    heartbeat = 10         # seconds between a worker's beats; a worker silent for 3 beats loses its job
    ladder = "step"        # what score a team reads (`server.ladder`): step, parameter-free, none (full precision)
    eta = 0.02             # the step's margin and rounding
    reveal_step = 300      # a submission's end is shown to its team on a grid of this many seconds from its start
"""
from __future__ import annotations

import tomllib
from pathlib import Path

from ..errors import InputError
from .archive import Limits
from .store import Quota

DEFAULTS = {"quota_per_day": 5, "quota_total": 100, "time_limit": 1800.0, "memory_mb": 8192, "upload_mb": 20.0,
            "unpacked_mb": 100.0, "members": 500, "ratio": 100.0, "heartbeat": 10.0, "ladder": "step", "eta": 0.02,
            "reveal_step": 300.0}


def read(path=None) -> dict:
    """The settings of `path` (None: the defaults); InputError naming the file and key."""
    out = dict(DEFAULTS)
    if path is None:
        return out
    path = Path(path)
    try:
        given = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: invalid TOML: {e}") from None
    for key, value in given.items():
        if key not in DEFAULTS:
            raise InputError(f"{path}: unknown key {key!r}; known: {', '.join(DEFAULTS)}")
        if key == "ladder":
            from .ladder import KINDS

            if value not in KINDS:
                raise InputError(f"{path}: ladder = {value!r}: expected one of {', '.join(KINDS)}")
            out[key] = value
            continue
        if key == "eta" and not (isinstance(value, (int, float)) and 0 < value < 1):
            raise InputError(f"{path}: eta = {value!r}: expected a number between 0 and 1")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise InputError(f"{path}: {key} = {value!r}: expected a positive number")
        out[key] = type(DEFAULTS[key])(value)
    return out


def quota(cfg: dict) -> Quota:
    return Quota(per_day=cfg["quota_per_day"], total=cfg["quota_total"])


def limits(cfg: dict) -> Limits:
    return Limits(upload_mb=cfg["upload_mb"], total_mb=cfg["unpacked_mb"], members=cfg["members"], ratio=cfg["ratio"])
