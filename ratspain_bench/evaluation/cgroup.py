"""Throw-away cgroups for sandboxed workers (memory counting shared mappings and tmpfs, a process count), and
the leftovers of a harness that was killed: every cgroup and scratch folder is named by its owner (the
harness process's pid and start time), and the next run removes those whose owner is gone (`sweep`)."""
from __future__ import annotations

import os
import re
import signal
import time
from functools import lru_cache
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
NAME = re.compile(r"^ratspain-(\d+)-(\d+)-")  # ratspain-<pid>-<start time>-...


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def owner() -> str:
    """`<pid>-<start time>` of this process: what names its cgroups and scratch folders."""
    pid = os.getpid()
    return f"{pid}-{_start_time(pid) or 0}"


def owner_alive(name: str) -> bool:
    """Whether the process that made `name` (a `ratspain-<pid>-<start>-...` name) still runs; True for other names."""
    m = NAME.match(name)
    if m is None:
        return True
    pid, start = int(m.group(1)), int(m.group(2))
    return _start_time(pid) == start or (start == 0 and _start_time(pid) is not None)


def _own(controller: str) -> str:
    """This process's cgroup path for a v1 controller ("" for the v2 hierarchy)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if controller in ctrls.split(",") or (controller == "" and ctrls == ""):
            return path
    return "/"


def parents() -> list[tuple[int, str, Path]]:
    """(version, controller, folder) where this process makes its cgroups."""
    if (ROOT / "cgroup.controllers").is_file():
        return [(2, "", ROOT / _own("").lstrip("/"))]
    out = []
    for ctrl in ("memory", "pids"):
        base = ROOT / ctrl
        if base.is_dir():
            mine = base / _own(ctrl).lstrip("/")
            out.append((1, ctrl, mine if mine.is_dir() else base))
    return out


class Cgroup:
    """A throw-away cgroup with memory and pids limits (v1 as root, or a writable v2 subtree); inert when none can be made."""

    def __init__(self, memory_mb: int, pids: int):
        self.dirs: list[Path] = []
        self.version = 0
        name = f"ratspain-{owner()}-{time.monotonic_ns()}"
        try:
            for version, ctrl, parent in parents():
                d = parent / name
                d.mkdir()
                self.dirs.append(d)
                self.version = version
                if version == 2:
                    (d / "memory.max").write_text(str(memory_mb << 20))
                    if (d / "memory.swap.max").exists():
                        (d / "memory.swap.max").write_text("0")
                    (d / "pids.max").write_text(str(pids))
                elif ctrl == "memory":
                    for f in ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"):
                        if (d / f).exists():
                            (d / f).write_text(str(memory_mb << 20))
                else:
                    (d / "pids.max").write_text(str(pids))
            if self.version == 1 and len(self.dirs) < 2:
                raise OSError("cgroup v1 needs both the memory and the pids controller")
        except OSError:
            self.remove()
            self.dirs, self.version = [], 0

    @property
    def active(self) -> bool:
        return bool(self.dirs)

    def enter_prefix(self) -> list[str]:
        """A shell prefix that moves itself into the cgroup, then execs the rest (no race with forks)."""
        if not self.active:
            return []
        writes = "; ".join(f"echo $$ > {d / 'cgroup.procs'}" for d in self.dirs)
        return ["/bin/sh", "-c", f'{writes}; exec "$@"', "sh"]

    def pids(self) -> list[int]:
        return _members(self.dirs)

    def kill(self) -> None:
        _kill(self.dirs)

    def _read(self, name: str) -> str:
        for d in self.dirs:
            if (d / name).exists():
                try:
                    return (d / name).read_text()
                except OSError:
                    return ""
        return ""

    def oom_killed(self) -> bool:
        text = self._read("memory.events" if self.version == 2 else "memory.oom_control")
        return any(line.startswith("oom_kill ") and int(line.split()[1]) > 0 for line in text.splitlines()) or \
            (self.version == 1 and self._read("memory.failcnt").strip() not in ("", "0") and "under_oom 1" in text)

    def peak_mb(self) -> float | None:
        text = self._read("memory.peak" if self.version == 2 else "memory.max_usage_in_bytes").strip()
        return int(text) / 2**20 if text.isdigit() else None

    def remove(self) -> None:
        _remove(self.dirs)


def _members(dirs) -> list[int]:
    out = set()
    for d in dirs:
        try:
            out |= {int(x) for x in (Path(d) / "cgroup.procs").read_text().split()}
        except OSError:
            pass
    return sorted(out)


def _kill(dirs) -> None:
    for _ in range(50):
        pids = _members(dirs)
        if not pids:
            return
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


def _remove(dirs) -> None:
    _kill(dirs)
    for d in dirs:
        for _ in range(50):
            try:
                Path(d).rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)


def sweep() -> int:
    """Remove the cgroups of harness processes that are gone (killed before they could); how many were removed."""
    stale = []
    for _, _, parent in parents():
        try:
            stale += [d for d in parent.iterdir() if d.is_dir() and NAME.match(d.name) and not owner_alive(d.name)]
        except OSError:
            continue
    _remove(stale)
    return len(stale)


@lru_cache(maxsize=1)
def cgroups_available() -> bool:
    """Whether a throw-away cgroup with memory and pids limits can be made here."""
    cg = Cgroup(64, 16)
    ok = cg.active
    cg.remove()
    return ok
