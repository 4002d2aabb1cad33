"""Uploads: a submission folder packed as .tar.gz or .zip, and unpacked safely.

`unpack` refuses, before writing anything outside `dest`: members that are links, devices, FIFOs, absolute paths
or `..`; more than `Limits.members` members; more than `Limits.total_mb` unpacked; a member or archive whose
unpacked size is more than `Limits.ratio` times its compressed size (a zip bomb); anything that is not a tar.gz or
a zip. Sizes are checked while reading, never trusted from the headers. `pack` makes the archive `submit upload`
sends: exactly the files a maintainer reviews (`identity.folder_files`: plain files inside the folder, no
compiled Python).
"""
from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import InputError


class Refused(InputError):
    """An upload refused before anything is queued; the message is one line for the team, `status` its HTTP code."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    upload_mb: float = 20.0   # the archive itself
    total_mb: float = 100.0   # every member, unpacked
    members: int = 500
    ratio: float = 100.0      # unpacked / compressed, per archive


def pack(folder) -> bytes:
    """A .tar.gz of the submission folder's reviewable files (sorted, owner and times zeroed: the same folder packs
    to the same bytes)."""
    from ..evaluation.identity import folder_files

    folder = Path(folder)
    if not (folder / "submission.toml").is_file():
        raise InputError(f"{folder}: no submission.toml (a submission folder holds submission.toml and its code)")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for rel, path in folder_files(folder):
            info = tarfile.TarInfo(rel)
            data = path.read_bytes()  # a link inside the folder: the file it leads to
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _member_path(name: str) -> PurePosixPath:
    p = PurePosixPath(name.replace("\\", "/"))
    if not name or p.is_absolute() or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise Refused(f"archive member {name[:100]!r}: an absolute path")
    if any(part == ".." for part in p.parts):
        raise Refused(f"archive member {name[:100]!r}: leaves the folder ('..')")
    parts = [x for x in p.parts if x not in ("", ".")]
    if not parts:
        raise Refused(f"archive member {name[:100]!r}: no file name")
    if len(name) > 1024 or len(parts) > 32:
        raise Refused(f"archive member {name[:100]!r}: a path too long or too deep")
    return PurePosixPath(*parts)


def _entries(data: bytes, limits: Limits):
    """(relative path, is_dir, file object opener) for each member, links and specials refused."""
    if data[:2] == b"\x1f\x8b":
        try:
            tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")
            members = []
            while True:  # one by one: a header-bomb of members is cut at the limit
                m = tar.next()
                if m is None:
                    break
                members.append(m)
                if len(members) > limits.members:
                    raise Refused(f"more than {limits.members} members in the archive", 413)
        except (tarfile.TarError, EOFError, OSError, zlib_error()) as e:
            raise Refused(f"not a readable .tar.gz ({type(e).__name__})") from None
        for m in members:
            if m.issym() or m.islnk():
                raise Refused(f"archive member {m.name[:100]!r}: a link; send plain files")
            if not (m.isfile() or m.isdir()):
                raise Refused(f"archive member {m.name[:100]!r}: a device, FIFO or other special file")
            path = _member_path(m.name)
            yield path, m.isdir(), (lambda m=m: tar.extractfile(m))
        return
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        try:
            z = zipfile.ZipFile(io.BytesIO(data))
            infos = z.infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise Refused(f"not a readable .zip ({type(e).__name__})") from None
        if len(infos) > limits.members:
            raise Refused(f"more than {limits.members} members in the archive", 413)
        for i in infos:
            mode = i.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise Refused(f"archive member {i.filename[:100]!r}: a link; send plain files")
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # no type bits: a plain file (most zip tools)
                raise Refused(f"archive member {i.filename[:100]!r}: a device, FIFO or other special file")
            path = _member_path(i.filename)
            yield path, i.is_dir(), (lambda i=i: z.open(i))
        return
    raise Refused("not a .tar.gz or .zip archive")


def zlib_error():
    import zlib

    return zlib.error


def unpack(data: bytes, dest, limits: Limits = Limits()) -> Path:
    """Unpack `data` into the empty folder `dest` (created); the submission folder inside it: `dest` itself, or its one
    top-level folder when everything sits in one. Refused (one line) on any of the module doc's conditions; on
    refusal `dest` is removed."""
    import shutil

    if len(data) > limits.upload_mb * 2**20:
        raise Refused(f"the archive is {len(data) / 2**20:.1f} MiB, more than the limit of {limits.upload_mb:g} MiB", 413)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=False)
    cap_total = int(limits.total_mb * 2**20)
    cap_ratio = int(max(len(data), 1) * limits.ratio)
    total = 0
    try:
        for path, is_dir, open_member in _entries(data, limits):
            target = dest.joinpath(*path.parts)
            if is_dir:
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                raise Refused(f"archive member {str(path)[:100]!r}: given twice")
            src = open_member()
            with src, open(target, "xb") as out:
                while True:
                    chunk = src.read(1 << 16)
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > cap_total:
                        raise Refused(f"more than {limits.total_mb:g} MiB unpacked", 413)
                    if total > cap_ratio:
                        raise Refused(f"unpacks to more than {limits.ratio:g} times its size (a compression bomb)", 413)
                    out.write(chunk)
            os.chmod(target, 0o644)
    except Refused:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib_error(), NotImplementedError) as e:
        shutil.rmtree(dest, ignore_errors=True)
        raise Refused(f"the archive could not be read ({type(e).__name__})") from None
    inner = list(dest.iterdir())
    root = inner[0] if not (dest / "submission.toml").exists() and len(inner) == 1 and inner[0].is_dir() else dest
    if not (root / "submission.toml").is_file():
        shutil.rmtree(dest, ignore_errors=True)
        raise Refused("no submission.toml at the top of the archive (pack the submission folder itself)")
    return root
