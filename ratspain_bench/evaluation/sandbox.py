"""Outside methods (submissions, untrusted plugins) run here: each fold in a fresh worker process inside a
bubblewrap sandbox, with limits; the harness keeps the test labels and scores.

The worker (`python -I -m ratspain_bench.evaluation.worker`) sees:
- read-only: the Python installation and its environment, the `ratspain_bench` package, the method's
  own code (submission folder or plugin distribution), and this fold's inputs: the training rats'
  images, labels, subject ids and keys and the test rat's images, subject id and keys (`/fold/in`), the
  test images in a secret random order and every key an HMAC under a per-run secret (`blind`);
- writable: a private tmpfs `/tmp` (its HOME) and `/fold/out`, where it writes its predictions (as root a
  tmpfs of `out_mb`, every file it writes capped at that size too);
- nothing else: not the dataset, the manifest, the runs folder, the caches, other folds' inputs, the
  network (its own empty network namespace), nor the harness's processes (its own PID namespace:
  ending it ends every descendant). Its environment is cleared; the kernel keyring, the page cache's exact
  probes and eviction calls, and namespaces of its own are refused it (`seccomp`).
As root, the worker runs as uid/gid 65534 (nobody) with no capabilities and `no_new_privs`; as a
normal user, in a user namespace with that user's uid.

One untrusted worker at a time, on the whole machine: a worker may be started ahead of its fold (its
interpreter and the installed libraries the method imports load meanwhile, `preload`), but it imports
the method only when it is handed the machine's sandbox lock (`Worker.arm`), once the previous untrusted
worker, of any method and any harness process, is gone. So no untrusted code runs while another holds labels.

Limits: wall clock per fold (the whole sandbox is killed), and, where a cgroup can be made (v1
`memory` + `pids` as root, or a delegated v2 subtree), memory counting shared mappings and tmpfs,
and a process count. Without a cgroup only the time limit is enforced. `--no-sandbox` runs the same
worker without bubblewrap (a fresh process per fold, no isolation); such rows are marked `unsandboxed`.
What a worker wrote is read as a hostile party's files (`outputs`).

What the workers are asked to do (a fold, a saved model's `train` and `predict`, `describe`) is `outside`.
"""
from __future__ import annotations

import ast
import atexit
import ctypes
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import InputError
from . import cgroup, outputs, seccomp
from .cgroup import Cgroup
from .outputs import OutputError

NOBODY = 65534
IN, OUT, STATE = "/fold/in", "/fold/out", "/fold/state"
SCRATCH = re.compile(r"^ratspain-fold-\d+-\d+-")  # ratspain-fold-<owner>-...: see `cgroup.owner`
# Installed libraries a worker may import before it is armed (never the method's own code): those its files import.
PRELOAD = ("ratspain_bench", "numpy", "scipy", "pandas", "sklearn", "skimage", "PIL", "cv2", "torch", "torchvision", "timm")
# Variables that change which numeric kernels a library picks (so a sandboxed method computes what it would in-process).
KERNEL_ENV = re.compile(r"^(OPENBLAS_(?!NUM_THREADS)\w+|MKL_(CBWR|ENABLE_INSTRUCTIONS|DEBUG_CPU_TYPE)|ATEN_CPU_CAPABILITY|"
                        r"NPY_DISABLE_CPU_FEATURES|NVPL_\w+)$")


@dataclass(frozen=True)
class SandboxSettings:
    """How outside methods run: `enabled` False is `--no-sandbox`; limits per fold."""

    enabled: bool = True
    time_limit: float = 1800.0  # seconds per fold (wall clock)
    memory_mb: int = 8192
    pids: int = 512
    tmp_mb: int = 2048
    threads: int = 0  # torch/OpenMP threads in the worker (0: all cores)
    state_mb: int = 1024  # the most a saved model's state (what `save` writes in a `train` worker) may hold
    out_mb: int = 256  # the most a worker may write to /fold/out (and into any one file), besides a saved state

    @property
    def mode(self) -> str:
        return "bwrap" if self.enabled else "none"

    def out_limit_mb(self, task: str) -> int:
        return self.out_mb + (self.state_mb if task == "train" else 0)


class SandboxError(Exception):
    """The worker failed, overran a limit or was killed; the message names the reason."""


@lru_cache(maxsize=1)
def unavailable() -> str | None:
    """None when bubblewrap can run a sandbox here; else why not (one line)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    try:
        r = subprocess.run(_bwrap_args([], []) + ["--", "/bin/true" if os.path.exists("/bin/true") else "true"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return f"bubblewrap cannot start here ({e})"
    if r.returncode != 0:
        return f"bubblewrap cannot create namespaces here ({(r.stderr or '').strip().splitlines()[-1:] or ['?']})"
    return None


def require(settings: SandboxSettings, names: list[str]) -> None:
    """Before any work: outside methods need a sandbox, or an explicit --no-sandbox."""
    if names and settings.enabled and unavailable():
        raise InputError(f"{', '.join(names)}: outside code runs only sandboxed, and {unavailable()}; "
                         "install bubblewrap, or pass --no-sandbox to run it unsandboxed (its rows are marked `unsandboxed`)")


# ---------------------------------------------------------------- the command


def _bwrap_args(ro: list[tuple[str, str]], rw: list[tuple[str, str]], tmp_mb: int = 64, devices=(), seccomp_fd=None) -> list[str]:
    args = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session"]
    if os.geteuid() != 0:
        args.insert(2, "--disable-userns")
        args.insert(2, "--unshare-user")
    else:  # privileged bwrap: no user namespace, the command drops to nobody itself (setpriv, below)
        args[1:2] = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup"]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        p = Path("/") / top
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            args += ["--ro-bind", str(p), str(p)]
    args += ["--ro-bind", "/usr", "/usr", "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
             "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(tmp_mb << 20), "--tmpfs", "/tmp",
             "--perms", "1777", "--size", str(tmp_mb << 20), "--tmpfs", "/dev/shm"]  # 1777: writable by the worker's nobody
    for d in devices:
        args += ["--dev-bind-try", d, d]
    made = {"/", "/usr", "/tmp", "/dev", "/proc", "/etc"}
    for src, dst in ro + rw:
        chain, d = [], os.path.dirname(dst)
        while d not in made:
            chain.append(d)
            made.add(d)
            d = os.path.dirname(d)
        for c in reversed(chain):
            args += ["--perms", "0755", "--dir", c]
        args += ["--ro-bind" if (src, dst) in ro else "--bind", src, dst]
        made.add(dst)
    return args


def _code_paths(spec) -> tuple[list[str], list[str]]:
    """(folders to bind read-only at their own path, extra sys.path entries for the worker)."""
    package = Path(__file__).resolve().parents[1]  # the ratspain_bench package (an editable install points here)
    paths = {str(Path(sys.base_prefix).resolve()), str(Path(sys.prefix)), str(package)}
    real = Path(sys.executable).resolve()
    if not any(str(real).startswith(p + os.sep) for p in paths):
        paths.add(str(real.parent))
    extra = []
    roots = []
    if spec.folder is not None:
        paths.add(str(spec.folder))
        module = spec.meta.get("entry_point", "").partition(":")[0]
        if module and not (spec.folder / f"{module.replace('.', '/')}.py").is_file():
            roots.append(_module_root(module))  # an installed module named by a submission folder
    elif spec.distribution:
        from importlib.metadata import distribution

        roots.append(str(Path(distribution(spec.distribution).locate_file("")).resolve()))
    for root in filter(None, roots):
        if not any(root == p or root.startswith(p + os.sep) for p in paths):
            paths.add(root)
            extra.append(root)
    # nested paths are covered by their parent's bind
    kept = sorted(p for p in paths if not any(p != q and p.startswith(q + os.sep) for q in paths))
    return kept, extra


def _module_root(module: str) -> str | None:
    """The sys.path entry holding a top-level module, found without importing it (None when not found)."""
    from importlib.machinery import PathFinder

    found = PathFinder.find_spec(module.split(".")[0])
    if found is None or not found.origin or not found.origin.endswith(".py"):
        return None
    origin = Path(found.origin).resolve()
    return str(origin.parent.parent if origin.name == "__init__.py" else origin.parent)


def _preload(spec) -> tuple[str, ...]:
    """The modules of the installed libraries in `PRELOAD` that the method's own files import (read as text, never run)."""
    return _imports_of(spec.name, spec.folder, spec.distribution, str(spec.target))


@lru_cache(maxsize=64)
def _imports_of(name: str, folder: Path | None, distribution: str, target: str) -> tuple[str, ...]:
    from .identity import _plugin_files, folder_files

    try:
        files = folder_files(folder) if folder is not None else _plugin_files(distribution, target)
    except Exception:  # noqa: BLE001 - a hint only: no preload when the files cannot be listed
        return ()
    found = set()
    for f in files:
        if f.suffix != ".py" or f.stat().st_size > 1 << 20:
            continue
        try:
            tree = ast.parse(f.read_text(encoding="utf-8", errors="replace"))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names if a.name != "*"}
    return tuple(sorted(m for m in found if m.split(".")[0] in PRELOAD and all(p.isidentifier() for p in m.split("."))))


def _env(settings: SandboxSettings) -> dict:
    threads = str(settings.threads or os.cpu_count() or 1)
    kernels = {k: v for k, v in os.environ.items() if KERNEL_ENV.match(k)}
    return {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "TMPDIR": "/tmp", **kernels}


def _command(spec, settings: SandboxSettings, task: str, scratch: Path, device: str, state: Path | None = None,
             seccomp_fd: int | None = None) -> list[str]:
    python = [sys.executable, "-I", "-m", "ratspain_bench.evaluation.worker", task]
    limit = ["prlimit", f"--fsize={settings.out_limit_mb(task) << 20}", "--"] if shutil.which("prlimit") else []
    if not settings.enabled:
        return limit + python + [str(scratch / "in"), str(scratch / "out")]
    ro_paths, _ = _code_paths(spec)
    devices = [str(p) for p in sorted(Path("/dev").glob("nvidia*"))] if device.startswith(("cuda", "auto")) else []
    ro = [(p, p) for p in ro_paths] + [(str(scratch / "in"), IN)] + ([(str(state), STATE)] if state is not None else [])
    args = _bwrap_args(ro, [(str(scratch / "out"), OUT)], settings.tmp_mb, devices, seccomp_fd)
    args += ["--clearenv", *[x for k, v in _env(settings).items() for x in ("--setenv", k, v)], "--chdir", "/tmp", "--"]
    if os.geteuid() == 0:
        args += ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all",
                 "--bounding-set=-all", "--no-new-privs"]
    return limit + args + python + [IN, OUT]


# ---------------------------------------------------------------- scratch folders


_MS_NOSUID, _MS_NODEV, _MNT_DETACH = 2, 4, 2


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _mount_tmpfs(path: Path, size_mb: int, inodes: int) -> bool:
    """A size- and inode-capped tmpfs at `path` (root only); False where it cannot be had."""
    if os.geteuid() != 0 or not sys.platform.startswith("linux"):
        return False
    opts = f"size={size_mb}m,nr_inodes={inodes},mode=0755".encode()
    return _libc().mount(b"tmpfs", str(path).encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, opts) == 0


def _unmount_under(root: Path) -> None:
    """Detach every mount at or below `root` (a scratch folder's tmpfs)."""
    try:
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    except OSError:
        return
    prefix = str(root).rstrip("/")
    for m in sorted((m for m in mounts if m == prefix or m.startswith(prefix + "/")), key=len, reverse=True):
        _libc().umount2(m.encode(), _MNT_DETACH)


def _remove_scratch(scratch: Path) -> None:
    _unmount_under(scratch)

    def writable(func, path, _exc):  # a worker may leave folders it made unreadable (mode 000)
        try:
            os.chmod(os.path.dirname(path), 0o700)
            os.chmod(path, 0o700)
            func(path)
        except OSError:
            pass

    shutil.rmtree(scratch, onerror=writable)


@lru_cache(maxsize=1)
def sweep() -> None:
    """Once per process: remove the cgroups, scratch folders and tmpfs mounts of harness processes that were killed."""
    cgroup.sweep()
    tmp = Path(tempfile.gettempdir())
    for d in tmp.glob("ratspain-fold-*"):
        name = d.name[len("ratspain-fold-"):]
        if SCRATCH.match(d.name) and not cgroup.owner_alive(f"ratspain-{name}") and d.is_dir() and not d.is_symlink():
            _remove_scratch(d)


# ---------------------------------------------------------------- one worker


def _request(spec, extra_path: list[str]) -> dict:
    return {"name": spec.name, "folder": None if spec.folder is None else str(spec.folder),
            "entry_point": spec.meta.get("entry_point") if spec.folder is not None else spec.target, "sys_path": extra_path,
            "preload": list(_preload(spec))}


LOCK = Path("/run/lock/ratspain-sandbox.lock")  # one fixed path: not $TMPDIR, which two harness processes may set apart


class _Gate:
    """The machine's sandbox lock (a `flock` on `LOCK`, else /tmp/ratspain-sandbox.lock, shared by every harness
    process whatever its $TMPDIR): held by the one armed worker from the moment it may import the method until it is gone."""

    def __init__(self):
        self.fd: int | None = None
        self.holder = None

    def acquire(self, worker) -> None:
        if self.holder is not None and self.holder is not worker:
            self.holder._end()  # never two armed workers in this process; `_end` releases the lock
        if self.fd is not None:
            return
        flags = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(LOCK, flags, 0o644)
        except OSError:  # no /run/lock, or not ours to write
            fd = os.open(Path("/tmp") / LOCK.name, flags, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("[sandbox] waiting for another run's sandboxed worker to finish", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        self.fd, self.holder = fd, worker

    def release(self, worker) -> None:
        if self.holder is worker and self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd, self.holder = None, None


_GATE = _Gate()


class Worker:
    """One worker process in its own sandbox and cgroup, for one task (one fold). It starts at once and loads the
    interpreter and its `preload` libraries, then waits; `arm` (when no other untrusted worker lives) lets it import
    the method, and `run` hands it its inputs. A spare started during the previous fold has paid its start-up by the
    time it is needed (`take`). Never reused: a fresh one per fold.
    `state`: a saved model's checked state folder, bound read-only at /fold/state (task `predict`)."""

    def __init__(self, spec, task: str, request: dict, settings: SandboxSettings, device: str = "cpu", spare: bool = False,
                 state: Path | None = None):
        sweep()
        self.settings, self.task, self.key = settings, task, _key(spec, task, request, settings, device, state)
        self.scratch = Path(tempfile.mkdtemp(prefix=f"ratspain-fold-{cgroup.owner()}-"))
        self.cgroup, self.log, self.proc, self.armed = None, None, None, False
        try:
            (self.scratch / "in").mkdir()
            (self.scratch / "out").mkdir()
            os.chmod(self.scratch, 0o700)
            os.chmod(self.scratch / "in", 0o755)
            limit = settings.out_limit_mb(task)
            self.bounded = settings.enabled and _mount_tmpfs(self.scratch / "out", limit, outputs.STATE_ENTRIES + 10_000)
            if os.geteuid() == 0 and settings.enabled:
                os.chown(self.scratch / "out", NOBODY, NOBODY)
            _, extra = _code_paths(spec)
            if state is not None:
                request = {**request, "state": STATE if settings.enabled else str(state)}
            (self.scratch / "in" / "request.json").write_text(json.dumps({**request, **_request(spec, extra)}, default=str))
            os.chmod(self.scratch / "in" / "request.json", 0o644)
            self.cgroup = Cgroup(settings.memory_mb, settings.pids)
            nice = ["nice", "-n", "19"] if spare else []  # a spare's start-up yields the cores to the fold being computed
            program = seccomp.program() if settings.enabled else None
            filter_fd = None
            if program is not None:
                (self.scratch / "seccomp.bpf").write_bytes(program)
                filter_fd = os.open(self.scratch / "seccomp.bpf", os.O_RDONLY)
            cmd = self.cgroup.enter_prefix() + nice + _command(spec, settings, task, self.scratch, device, state, filter_fd)
            env = None if settings.enabled else {**_env(settings), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            self.log = open(self.scratch / "log.txt", "w+b")
            try:
                self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                             cwd=str(self.scratch), start_new_session=True,
                                             pass_fds=() if filter_fd is None else (filter_fd,))
            finally:
                if filter_fd is not None:
                    os.close(filter_fd)
        except BaseException:
            self.close()
            raise

    @property
    def out(self) -> Path:
        return self.scratch / "out"

    def promote(self) -> None:
        """A spare becomes the fold's worker: back to normal priority (where this process may raise it), every thread of
        every process (on Linux a priority is per thread: a BLAS pool started during the preload would stay at 19)."""
        for pid in self.cgroup.pids() if self.cgroup.active else [self.proc.pid]:
            try:
                tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
            except OSError:
                tids = [pid]
            for tid in tids:
                try:
                    os.setpriority(os.PRIO_PROCESS, tid, 0)
                except OSError:
                    pass

    def arm(self) -> None:
        """Let the worker import the method: it takes the machine's sandbox lock (waiting for any other untrusted worker
        to be gone) and holds it until this worker is ended."""
        if not self.armed:
            _GATE.acquire(self)
            self.armed = True
            (self.scratch / "in" / "GO").write_text("")

    def run(self, arrays: dict[str, np.ndarray], timeout: float | None = None) -> Path:
        """Hand the worker its inputs and wait (at most `timeout`, default the time limit); its out folder.
        Raises SandboxError naming why it failed; `close` afterwards either way."""
        self.arm()
        inp = self.scratch / "in"
        for name, arr in arrays.items():
            np.save(inp / f"{name}.npy", arr, allow_pickle=False)
            os.chmod(inp / f"{name}.npy", 0o644)
        (inp / "READY").write_text("")
        limit = timeout or self.settings.time_limit
        try:
            rc = self.proc.wait(timeout=limit)
            why = None
        except subprocess.TimeoutExpired:
            rc, why = None, f"time limit of {limit:g} s exceeded"
        self._end()
        if why is None and self.cgroup.oom_killed():
            peak = self.cgroup.peak_mb()
            why = f"memory limit of {self.settings.memory_mb} MiB exceeded" + (f" (peak {peak:.0f} MiB)" if peak else "")
        if why is None and rc != 0:
            why = self._failure(rc)
        if why is not None:
            raise SandboxError(why)
        return self.out

    def _failure(self, rc: int) -> str:
        """Why a worker that exited with `rc` failed: its own account, else its exit, a limit it hit, its last output."""
        try:
            reported = outputs.one_line(outputs.read_json(self.out / "error.json").get("error", ""))
        except (OutputError, AttributeError):
            reported = ""
        if reported:
            return reported
        mb = self.settings.out_limit_mb(self.task)
        if rc in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ):
            return f"wrote a file larger than the limit of {mb} MiB"
        if self.bounded:
            st = os.statvfs(self.out)
            if st.f_bavail * st.f_frsize < 1 << 20 or st.f_favail == 0:
                return f"filled /fold/out (limit {mb} MiB)"
        how = f"killed by signal {signal.Signals(-rc).name}" if rc < 0 else f"exited with code {rc}"
        tail = outputs.one_line(outputs.log_tail(self.log.fileno()), 200) if self.log is not None else ""
        return how + (f"; last output: {tail}" if tail else "")

    def _end(self) -> None:
        """Kill the sandbox and anything left in its session and cgroup; the sandbox lock goes with it."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        if self.cgroup is not None:
            self.cgroup.kill()
        _GATE.release(self)

    def close(self) -> None:
        self._end()
        if self.cgroup is not None:
            self.cgroup.remove()
        if self.log is not None:
            self.log.close()
        _remove_scratch(self.scratch)


def _key(spec, task, request, settings, device, state=None) -> str:
    key = [spec.name, str(spec.folder), str(spec.target), task, request, repr(settings), device]
    return json.dumps(key + [str(state)] if state is not None else key, sort_keys=True, default=str)


_SPARES: dict[str, Worker] = {}


def take(spec, task: str, request: dict, settings: SandboxSettings, device: str = "cpu", spare: bool = False,
         state: Path | None = None) -> Worker:
    """An armed worker for this task: the waiting spare when one matches, else a new one. With `spare`, start the
    next one now (for the next fold of the same method), so its start-up overlaps this fold's work."""
    key = _key(spec, task, request, settings, device, state)
    worker = _SPARES.pop(key, None)
    if worker is not None and worker.proc.poll() is not None:  # it died while waiting
        worker.close()
        worker = None
    if worker is None:
        worker = Worker(spec, task, request, settings, device, state=state)
    else:
        worker.promote()
    try:
        worker.arm()  # it imports the method while the inputs are written
        if spare:
            _SPARES[key] = Worker(spec, task, request, settings, device, spare=True, state=state)
    except BaseException:
        worker.close()
        raise
    return worker


def prestart(spec, task: str, request: dict, settings: SandboxSettings, device: str = "cpu") -> None:
    """Start a worker for this task now, not armed (its interpreter and preloads load meanwhile); `take` hands it out."""
    key = _key(spec, task, request, settings, device)
    if key not in _SPARES:
        _SPARES[key] = Worker(spec, task, request, settings, device)


def drop_spare(spec, task: str, request: dict, settings: SandboxSettings, device: str = "cpu", state: Path | None = None) -> None:
    """Close the waiting spare of this task, if any (no more batches or folds follow)."""
    worker = _SPARES.pop(_key(spec, task, request, settings, device, state), None)
    if worker is not None:
        worker.close()


@atexit.register
def close_spares() -> None:
    while _SPARES:
        _SPARES.popitem()[1].close()


def run_worker(spec, task: str, request: dict, arrays: dict[str, np.ndarray], settings: SandboxSettings,
               device: str = "cpu", timeout: float | None = None) -> tuple[Path, callable]:
    """Run one worker on `request` and `arrays`; (its out folder, cleanup). Raises SandboxError."""
    worker = Worker(spec, task, request, settings, device)
    try:
        return worker.run(arrays, timeout), worker.close
    except BaseException:
        worker.close()
        raise
