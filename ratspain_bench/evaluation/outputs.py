"""Reading what a sandboxed worker wrote, as a hostile party's files: nothing here can hang or bloat the harness.

Every file is opened without following links and without blocking (a FIFO or a device is refused, not
waited on), checked with `fstat` to be a regular file, and read up to a size cap. A predictions file is
an `.npz` whose members are checked from their headers before any array is loaded: only the members the
task expects (`labels`, `scores`, and `au_<name>` in the au task), each a numeric vector of one entry per
test image. A worker's log is read from its end only. A saved model's state (`check_tree`, `copy_tree`)
may hold only plain files and folders, within a size and an entry count.
"""
from __future__ import annotations

import io
import json
import math
import os
import stat
import zipfile
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..methods.base import Predictions
from ..tasks import AUS

SMALL = 1 << 20  # JSON a worker writes (error.json, info.json, describe.json): at most 1 MiB
STATE_ENTRIES = 100_000  # files and folders a saved state may hold
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


class OutputError(Exception):
    """A worker's output is missing, not a plain file, too large or malformed; the message names the file and why."""


def read_bytes(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; OutputError otherwise (never blocks, never follows a link)."""
    name = Path(path).name
    try:
        fd = os.open(path, _OPEN)
    except FileNotFoundError:
        raise OutputError(f"no {name}") from None
    except OSError as e:  # a symlink (ELOOP) or anything else that cannot be opened plainly
        raise OutputError(f"{name} cannot be opened as a plain file ({os.strerror(e.errno)})") from None
    st = os.fstat(fd)  # before fdopen, which refuses a directory with an error of its own
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise OutputError(f"{name} is not a regular file")
    with os.fdopen(fd, "rb") as f:
        if st.st_size > limit:
            raise OutputError(f"{name} is {st.st_size:,} bytes, more than the limit of {limit:,}")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OutputError(f"{name} grew past the limit of {limit:,} bytes")
    return data


def read_json(path: Path, limit: int = SMALL):
    """A small JSON file a worker wrote; OutputError when it is not one."""
    data = read_bytes(path, limit)
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:
        raise OutputError(f"{Path(path).name} is not JSON ({type(e).__name__})") from None


def predictions_limit(n: int, task: str) -> int:
    """The largest predictions file a worker may write for `n` test images (8-byte values, headers, zip records)."""
    members = 2 + (len(AUS) if task == "au" else 0)
    return 64 * 1024 + members * 8 * (4 * n + 16)


def _member(z: zipfile.ZipFile, name: str, n: int) -> np.ndarray:
    """One npz member, its .npy header checked before its data is read: plain numbers, at most `4 n + 16` of them (the
    predictions rules then judge its shape, naming the rule broken)."""
    most = 4 * n + 16
    info = z.getinfo(f"{name}.npy")
    if info.file_size > 1024 + 8 * most:
        raise OutputError(f"predictions.npz: {name} holds {info.file_size:,} bytes, far more than {n} values")
    with z.open(info) as f:
        try:
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            version = np.lib.format.read_magic(f)
            if version not in read:
                raise ValueError(f"format version {version}")
            shape, fortran, dtype = read[version](f, max_header_size=1024)
        except (ValueError, SyntaxError) as e:
            raise OutputError(f"predictions.npz: {name} has no valid array header ({e})") from None
        if dtype.hasobject or dtype.kind not in "biuf" or dtype.itemsize > 8 or dtype.fields or dtype.subdtype:
            raise OutputError(f"predictions.npz: {name} has dtype {dtype}, not a plain number type")
        count = math.prod(shape)  # exact: a forged header's huge dimensions cannot wrap around
        if count > most:
            raise OutputError(f"predictions.npz: {name} has shape {shape}, far more than one value per test image ({n})")
        size = dtype.itemsize * count
        data = f.read(size + 1)
    if len(data) != size:
        raise OutputError(f"predictions.npz: {name} holds {len(data)} bytes of data, its header says {size}")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C").copy()


def read_predictions(out: Path, n: int, task: str = "binary") -> Predictions:
    """The predictions a worker wrote to `out/predictions.npz` for `n` test images; members other than those the task
    expects are never read. OutputError naming what is wrong."""
    data = read_bytes(Path(out) / "predictions.npz", predictions_limit(n, task))
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as e:
        raise OutputError(f"predictions.npz is not an npz file ({e})") from None
    names = {i.filename for i in z.infolist()}
    wanted = ["labels", "scores"] + ([f"au_{a}" for a in AUS] if task == "au" else [])
    missing = [w for w in wanted if f"{w}.npy" not in names]
    if missing:
        raise OutputError(f"predictions.npz lacks {', '.join(missing)}")
    try:
        arrays = {w: _member(z, w, n) for w in wanted}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:  # a corrupt member (CRC, truncation, compression)
        raise OutputError(f"predictions.npz: a member cannot be read ({type(e).__name__}: {e})") from None
    au = {a: arrays[f"au_{a}"] for a in AUS} if task == "au" else None
    return Predictions(arrays["labels"], arrays["scores"], au=au)


def log_tail(fd: int, limit: int = 4096) -> str:
    """The last line of a log, read through the harness's own descriptor from at most `limit` bytes before its end."""
    try:
        size = os.fstat(fd).st_size
        data = os.pread(fd, limit, max(0, size - limit))
    except OSError:
        return ""
    lines = data.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""


def one_line(text, limit: int = 600) -> str:
    """Untrusted text as one printable line of at most `limit` characters."""
    return "".join(ch for ch in str(text) if ch.isprintable())[:limit]


# ---------------------------------------------------------------- a saved model's state


def check_tree(root: Path, limit_mb: int, name: str) -> int:
    """Total bytes of `root`, which must hold only plain files and folders (no symlinks, devices, fifos, sockets),
    at most `limit_mb` MiB and STATE_ENTRIES entries; else an InputError naming the method and the entry."""
    root, total, entries, limit = Path(root), 0, 0, limit_mb << 20
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        raise InputError(f"{name}: it saved no state") from None
    if not stat.S_ISDIR(st.st_mode):
        raise InputError(f"{name}: its saved state is not a folder")
    todo = [root]
    while todo:
        d = todo.pop()
        with os.scandir(d) as it:
            for e in it:
                entries += 1
                st = e.stat(follow_symlinks=False)
                rel = Path(e.path).relative_to(root).as_posix()
                if stat.S_ISDIR(st.st_mode):
                    todo.append(Path(e.path))
                elif stat.S_ISREG(st.st_mode):
                    total += st.st_size
                else:
                    kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "a special file"
                    raise InputError(f"{name}: its saved state holds {rel!r}, {kind}; a model's state may hold only plain "
                                     "files and folders")
                if total > limit:
                    raise InputError(f"{name}: its saved state exceeds the limit of {limit_mb} MiB (at {rel!r})")
                if entries > STATE_ENTRIES:
                    raise InputError(f"{name}: its saved state holds more than {STATE_ENTRIES} files and folders")
    return total


def copy_tree(src: Path, dst: Path, limit_mb: int, name: str) -> None:
    """Copy a state folder checked by `check_tree` into `dst` (created; folders 0755, files 0644), symlinks never
    followed and nothing waited on; the byte limit is enforced again while copying."""
    check_tree(src, limit_mb, name)
    src, dst, left = Path(src), Path(dst), limit_mb << 20
    dst.mkdir(parents=True, exist_ok=True)
    os.chmod(dst, 0o755)
    for d, dirs, files in os.walk(src, followlinks=False):
        here = dst / Path(d).relative_to(src)
        for sub in dirs:
            (here / sub).mkdir()
            os.chmod(here / sub, 0o755)
        for f in files:
            try:
                fd = os.open(Path(d) / f, _OPEN)
            except OSError:
                raise InputError(f"{name}: its saved state holds a file that cannot be opened plainly") from None
            with os.fdopen(fd, "rb") as r, open(here / f, "wb") as w:
                if not stat.S_ISREG(os.fstat(r.fileno()).st_mode):
                    raise InputError(f"{name}: its saved state holds a file that is not a plain file")
                while chunk := r.read(1 << 20):
                    left -= len(chunk)
                    if left < 0:
                        raise InputError(f"{name}: its saved state exceeds the limit of {limit_mb} MiB")
                    w.write(chunk)
            os.chmod(here / f, 0o644)
