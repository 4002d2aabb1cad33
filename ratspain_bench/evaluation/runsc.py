"""gVisor (`runsc`): each worker runs on a kernel of its own (the Sentry, a user-space kernel), so it shares no kernel
state with the next worker: no page cache it can probe (`/proc/self/pagemap`, `mincore`, `statm` describe the
sandbox), no dentry or inode counters, no `/proc/meminfo` of the host, no file locks, keyring or IPC.

A worker is an OCI bundle (`write_bundle`): an empty read-only root with the system folders, the Python installation,
the method's code and the fold's inputs bound read-only, `/fold/out` writable, a private `/tmp`; uid 65534 with no
capabilities; no network (`--network=none`); `--platform=ptrace` (the KVM platform needs nested virtualisation).

Two things of the host stay shared with the next worker:
- **Access times** (closed here). The gofer (runsc's file server) reads the host's files on a read-write view, so a worker that
  reads a file of the installation moves its access time (relatime: once a day), which the next worker reads with
  `stat`: an exact bit per file. `runsc` therefore starts in a mount namespace of its own where every folder it binds
  read-only is remounted read-only (`host_view`): a read-only mount never moves an access time.
- **Timing** (not closed). The host's page cache and dentry cache still make a file the previous worker read faster
  to read again; only timing shows it: see SECURITY.md for the figures.

Start-up: `import torch` takes ~5x longer under gVisor's ptrace platform here (each system call costs ~0.1 ms). So a
worker is *restored* from a snapshot (`runsc checkpoint`) of a worker that ran only trusted code: the interpreter, the
worker module and the installed libraries the method imports (`preload`), waiting for `GO`. The snapshot is taken once
per machine and layout (`template_key`: installation, libraries, environment, limits, this package's sources) under
`$RATSPAIN_SANDBOX_CACHE` (default /var/cache/ratspain-bench/runsc), and every worker starts from it: the same state
for every fold, written by nothing a worker ran.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

NOBODY = 65534
PLATFORM = os.environ.get("RATSPAIN_RUNSC_PLATFORM", "ptrace")
READY = b"ratspain-worker: preloaded"  # what a worker prints once its trusted start-up is done (worker.main)
KEEP = 8  # snapshots kept per machine (the least recently used go first)
HOST_VIEW = ('n=$1; shift; i=0; while [ "$i" -lt "$n" ]; do '
             'mount --bind "$1" "$1" && mount -o remount,bind,ro,nosuid,nodev "$1" || exit 97; shift; i=$((i+1)); done; '
             'exec "$@"')


def templates_dir() -> Path:
    return Path(os.environ.get("RATSPAIN_SANDBOX_CACHE", "/var/cache/ratspain-bench/runsc"))


@lru_cache(maxsize=1)
def unavailable() -> str | None:
    """None when gVisor can run a worker here; else why not (one line)."""
    if sys.platform != "linux":
        return "gVisor runs on Linux only"
    if shutil.which("runsc") is None:
        return "gVisor's runsc is not installed (Debian/Ubuntu: apt-get install runsc)"
    if os.geteuid() != 0:
        return "runsc needs root here (rootless gVisor is not used)"
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "util-linux's unshare and mount are needed to start runsc"
    folder = Path(tempfile.mkdtemp(prefix="ratspain-runsc-check-"))
    try:
        bundle = write_bundle(folder / "bundle", ["/bin/true" if os.path.exists("/bin/true") else "/usr/bin/true"],
                              [], [], {"PATH": "/usr/bin:/bin"}, 16, 1 << 20)
        container = f"ratspain-check-{os.getpid()}-{time.monotonic_ns()}"  # gVisor names a socket by it: one per check
        cmd = host_view([p for p, _ in system_binds()]) + runsc(folder / "state") + ["run", "--bundle", str(bundle), container]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env())
    except (OSError, subprocess.SubprocessError) as e:
        return f"runsc cannot start here ({e})"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if r.returncode != 0:
        return f"runsc cannot start a sandbox here ({(r.stderr or '').strip().splitlines()[-1:] or ['?']})"
    return None


@lru_cache(maxsize=1)
def binary() -> str:
    """runsc's path, size and mtime: part of every snapshot's key."""
    path = shutil.which("runsc") or "runsc"
    try:
        st = os.stat(path)
        return f"{path}:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        return path


def env() -> dict:
    """runsc's own environment: the harness's PATH and nothing else (a $TMPDIR its sandbox cannot enter stops it)."""
    return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}


def runsc(state: Path) -> list[str]:
    """runsc's global flags: its state under the worker's scratch folder, no network, our own cgroups."""
    return [shutil.which("runsc") or "runsc", "--root", str(state), "--network=none", f"--platform={PLATFORM}", "--ignore-cgroups"]


def host_view(ro_sources: list[str]) -> list[str]:
    """A prefix that starts the rest in a private mount namespace where each of `ro_sources` is a read-only mount (a
    file read through it moves no access time)."""
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", HOST_VIEW, "sh",
            str(len(ro_sources)), *ro_sources]


def system_binds() -> list[tuple[str, str]]:
    """The host's system folders a worker needs (read-only), and what stays a symlink in its root."""
    out = [("/usr", "/usr")]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        p = Path("/") / top
        if p.is_dir() and not p.is_symlink():
            out.append((str(p), str(p)))
    if Path("/etc/ld.so.cache").is_file():
        out.append(("/etc/ld.so.cache", "/etc/ld.so.cache"))
    return out


def write_bundle(folder: Path, args: list[str], ro: list[tuple[str, str]], rw: list[tuple[str, str]], env: dict,
                 tmp_mb: int, fsize: int) -> Path:
    """An OCI bundle (config.json and an empty read-only root) that runs `args` as nobody with these binds."""
    root = folder / "rootfs"
    root.mkdir(parents=True)
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        p = Path("/") / top
        if p.is_symlink():
            os.symlink(os.readlink(p), root / top)
    binds = system_binds() + ro
    for src, dst in binds + rw:
        target = root / dst.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        if Path(src).is_dir():
            target.mkdir(exist_ok=True, mode=0o755)
        elif not target.exists():
            target.touch(mode=0o644)
    for d in (root / "tmp", root / "proc", root / "dev"):
        d.mkdir(exist_ok=True, mode=0o755)
    for d in sorted(p for p in root.rglob("*") if p.is_dir() and not p.is_symlink()):
        os.chmod(d, 0o755)
    os.chmod(root, 0o755)
    mounts = [{"destination": "/proc", "type": "proc", "source": "proc"},
              {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777", f"size={tmp_mb}m"]}]
    mounts += [{"destination": dst, "type": "bind", "source": src, "options": ["rbind", "ro"]} for src, dst in binds]
    mounts += [{"destination": dst, "type": "bind", "source": src, "options": ["rbind", "rw"]} for src, dst in rw]
    uid = NOBODY if os.geteuid() == 0 else os.geteuid()
    config = {
        "ociVersion": "1.0.0", "hostname": "fold", "root": {"path": str(root), "readonly": True}, "mounts": mounts,
        "process": {"terminal": False, "user": {"uid": uid, "gid": uid}, "args": args, "cwd": "/tmp",
                    "env": [f"{k}={v}" for k, v in env.items()], "noNewPrivileges": True,
                    "capabilities": {k: [] for k in ("bounding", "effective", "inheritable", "permitted", "ambient")},
                    "rlimits": [{"type": "RLIMIT_FSIZE", "hard": fsize, "soft": fsize}, {"type": "RLIMIT_CORE", "hard": 0, "soft": 0}]},
        "linux": {"namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]},
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


# ---------------------------------------------------------------- snapshots of a worker's trusted start-up


@lru_cache(maxsize=1)
def _package_digest() -> str:
    """This package's sources as they are now (a snapshot holds the worker module and what it imported)."""
    package = Path(__file__).resolve().parents[1]
    h = hashlib.sha1()
    for f in sorted(package.rglob("*.py")):
        st = f.stat()
        h.update(f"{f.relative_to(package)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _installed_state() -> list:
    """What changes when a library is installed, upgraded or removed: the worker's library folders (its interpreter's,
    run isolated: not the harness's sys.path)."""
    import sysconfig

    out = []
    for p in sorted({sysconfig.get_path(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")} - {None}):
        try:
            out.append([p, os.stat(p).st_mtime_ns])
        except OSError:
            out.append([p, None])
    return out


def template_key(layout: dict) -> str:
    """The snapshot a worker of this layout (its command, binds, environment, limits, preloads) starts from."""
    payload = {**layout, "runsc": binary(), "platform": PLATFORM, "package": _package_digest(),
               "installed": _installed_state(), "python": sys.executable}
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


_FAILED: set[str] = set()  # keys whose snapshot could not be made in this process: cold starts instead


def template(key: str, make_cold, patience: float) -> Path | None:
    """The folder of the snapshot for `key`, made now if missing: `make_cold()` starts a cold worker (which runs
    only trusted code until armed), its start-up is checkpointed once it reports READY. None where none can be had."""
    folder = templates_dir() / key
    if (folder / "checkpoint.img").is_file():
        os.utime(folder)
        return folder
    if key in _FAILED:
        return None
    try:
        templates_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(templates_dir(), 0o700)
        lock = os.open(templates_dir() / f"{key}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError:
        _FAILED.add(key)
        return None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another harness may be making the same one
        if not (folder / "checkpoint.img").is_file() and not _checkpoint(make_cold(), folder, patience):
            _FAILED.add(key)
            return None
        _prune(keep=folder)
        return folder
    finally:
        os.close(lock)


def _checkpoint(worker, folder: Path, patience: float) -> bool:
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    try:
        deadline = time.monotonic() + patience
        while READY not in worker.log_head():
            if worker.proc.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(mode=0o700)
        r = subprocess.run(runsc(worker.runsc_state) + ["checkpoint", f"--image-path={tmp}", worker.runsc_id],
                           capture_output=True, timeout=max(patience, 60), env=env())
        if r.returncode != 0 or not (tmp / "checkpoint.img").is_file():
            return False
        os.rename(tmp, folder)
        return True
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        worker.close()
        shutil.rmtree(tmp, ignore_errors=True)


def forget(folder: Path) -> None:
    """A snapshot that could not be restored (the installation changed under it): removed, made again next time."""
    _FAILED.discard(folder.name)
    shutil.rmtree(folder, ignore_errors=True)


def _prune(keep: Path) -> None:
    try:
        found = sorted((d for d in templates_dir().iterdir() if d.is_dir() and not d.name.startswith(".") and d != keep),
                       key=lambda d: d.stat().st_mtime, reverse=True)
    except OSError:
        return
    for d in found[KEEP - 1:]:
        shutil.rmtree(d, ignore_errors=True)
        try:
            (templates_dir() / f"{d.name}.lock").unlink()
        except OSError:
            pass


def command(state: Path, bundle: Path, container: str, image: Path | None) -> list[str]:
    """`runsc run` of the bundle, or `runsc restore` of it from the snapshot `image`."""
    if image is None:
        return runsc(state) + ["run", "--bundle", str(bundle), container]
    return runsc(state) + ["restore", f"--image-path={image}", "--bundle", str(bundle), container]


def delete(state: Path, container: str) -> None:
    """Stop what is left of a container whose runsc process was killed (no cgroup to empty)."""
    try:
        subprocess.run(runsc(state) + ["delete", "--force", container], capture_output=True, timeout=30, env=env())
    except (OSError, subprocess.SubprocessError):
        pass
