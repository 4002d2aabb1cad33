"""Outside methods (submissions, untrusted plugins) run here: each fold in a fresh worker process inside a sandbox,
with limits; the harness keeps the test labels and scores.

Three kinds (`SandboxSettings.kind`; `auto`, the default, takes the strongest that works here):
- `runsc` (`runsc.py`): gVisor, a kernel of its own per worker; nothing of the kernel is shared with the next worker,
  so any number of them may run at once on a machine. Workers start from a snapshot of a trusted start-up.
- `bwrap` (`bwrap.py`): bubblewrap, namespaces on the host's kernel, with a seccomp filter. Its caches and counters
  are shared, so one bwrap worker at a time per machine (the machine lock, below).
- `none` (`--sandbox none`): a plain process per fold, no isolation; its rows are marked `unsandboxed`.

The worker (`python -I -m ratspain_bench.evaluation.worker IN OUT`) sees:
- read-only: the Python installation and its environment, the `ratspain_bench` package, the method's own code (a
  private copy of exactly the files its code hash covers, at `/fold/code`; a plugin's distribution at its path), and
  this fold's inputs (`/fold/in`): the training rats' images, labels, subject ids and keys and the test rat's images,
  subject id and keys, the test images in a secret random order and every key an HMAC under a per-run secret (`blind`);
- writable: a private tmpfs `/tmp` (its HOME) and `/fold/out`, where it writes its predictions (as root a tmpfs of
  `out_mb`, every file it writes capped at that size too);
- nothing else: not the dataset, the runs folder, the caches, other folds' inputs, the network, the harness's processes.

A worker may be started ahead of its fold (its interpreter and the installed libraries the method imports load
meanwhile, `preload`); it imports the method only once armed (`Worker.arm`: it writes `IN/GO`), which waits until no
other armed worker of this process lives, and under bwrap or none also for the machine lock. So no outside code of
one run runs while another worker of it holds labels.

Limits: wall clock per fold (the whole sandbox is killed), and, where a cgroup can be made (v1 `memory` + `pids` as
root, or a delegated v2 subtree), memory counting shared mappings and tmpfs, and a process count. What a worker wrote
is read as a hostile party's files (`outputs`). What the workers are asked to do is `outside`.
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
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import InputError
from . import bwrap, cgroup, outputs, runsc, seccomp
from .cgroup import Cgroup
from .outputs import OutputError

NOBODY = 65534
IN, OUT, STATE, CODE, LIB = "/fold/in", "/fold/out", "/fold/state", "/fold/code", "/fold/lib"
KINDS = ("auto", "runsc", "bwrap", "none")
SCRATCH = re.compile(r"^ratspain-(fold|code)-(\d+-\d+)-")  # a worker's scratch, a code snapshot: `cgroup.owner` names them
# Installed libraries a worker may import before it is armed (never the method's own code): those its files import.
PRELOAD = ("ratspain_bench", "numpy", "scipy", "pandas", "sklearn", "skimage", "PIL", "cv2", "torch", "torchvision", "timm")
# Variables that change which numeric kernels a library picks (so a sandboxed method computes what it would in-process).
KERNEL_ENV = re.compile(r"^(OPENBLAS_(?!NUM_THREADS)\w+|MKL_(CBWR|ENABLE_INSTRUCTIONS|DEBUG_CPU_TYPE)|ATEN_CPU_CAPABILITY|"
                        r"NPY_DISABLE_CPU_FEATURES|NVPL_\w+)$")


@dataclass(frozen=True)
class SandboxSettings:
    """How outside methods run: `kind` (auto, runsc, bwrap, none); limits per fold."""

    kind: str = "auto"
    time_limit: float = 1800.0  # seconds per fold (wall clock)
    memory_mb: int = 8192
    pids: int = 512
    tmp_mb: int = 2048
    threads: int = 0  # torch/OpenMP threads in the worker (0: all cores)
    state_mb: int = 1024  # the most a saved model's state (what `save` writes in a `train` worker) may hold
    out_mb: int = 256  # the most a worker may write to /fold/out (and into any one file), besides a saved state

    def __post_init__(self):
        if self.kind not in KINDS:
            raise InputError(f"--sandbox {self.kind!r}: expected one of {', '.join(KINDS)}")

    @property
    def enabled(self) -> bool:
        return self.kind != "none"

    def resolved(self, device: str = "cpu") -> str:
        """The kind workers on `device` get (`auto`: the strongest that works here); InputError naming what to install."""
        return resolve(self.kind, device)

    def out_limit_mb(self, task: str) -> int:
        return self.out_mb + (self.state_mb if task == "train" else 0)


def settings(sandbox=True, **limits) -> SandboxSettings:
    """`sandbox` as the API takes it: True (the strongest here), False (none) or a kind's name."""
    if isinstance(sandbox, SandboxSettings):
        return sandbox
    kind = {True: "auto", False: "none"}.get(sandbox, sandbox) if isinstance(sandbox, bool) else str(sandbox)
    return SandboxSettings(kind=kind, **limits)


class SandboxError(Exception):
    """The worker failed, overran a limit or was killed; the message names the reason, `reason` is one of REASONS."""

    def __init__(self, message: str, reason: str = "crashed"):
        super().__init__(message)
        self.reason = reason


# Why an outside method's fold failed, as the harness tells it (never the code's own words): what a hosted
# leaderboard may show a team (`server`). `malformed` carries the predictions rule it broke.
REASONS = {"time_limit": "time limit exceeded", "memory_limit": "memory limit exceeded", "output_limit": "output limit exceeded",
           "crashed_import": "crashed while loading the method", "crashed_fit": "crashed in fit", "crashed_predict": "crashed in predict",
           "crashed": "crashed", "malformed": "malformed predictions"}


def unavailable(kind: str = "auto") -> str | None:
    """None when sandboxes of `kind` can run here (`auto`: either); else why not (one line)."""
    if kind == "runsc":
        return runsc.unavailable()
    if kind == "bwrap":
        return bwrap.unavailable()
    if kind == "auto":
        return None if not runsc.unavailable() else bwrap.unavailable()
    return None


def wants_gpu(device: str) -> bool:
    return device.startswith("cuda") or (device == "auto" and any(Path("/dev").glob("nvidia[0-9]*")))


@lru_cache(maxsize=None)
def resolve(kind: str, device: str = "cpu") -> str:
    """The sandbox kind for workers on `device` (see `SandboxSettings.resolved`)."""
    gpu = wants_gpu(device)
    if kind == "none":
        return "none"
    if kind == "auto":
        if not runsc.unavailable() and not gpu:
            return "runsc"
        if not bwrap.unavailable():
            if gpu and not runsc.unavailable():
                print("[sandbox] GPU folds run under bubblewrap: this runsc cannot pass a GPU through", file=sys.stderr)
            return "bwrap"
        raise InputError(f"no sandbox can run here: {runsc.unavailable()}; and {bwrap.unavailable()}")
    if kind == "runsc" and gpu:
        raise InputError("--sandbox runsc: this harness runs gVisor workers on the CPU only; use --device cpu, or "
                         "--sandbox bwrap for a GPU (its workers share the host's kernel)")
    problem = unavailable(kind)
    if problem:
        raise InputError(f"--sandbox {kind}: {problem}")
    return kind


def require(settings: SandboxSettings, names: list[str], device: str = "cpu") -> None:
    """Before any work: outside methods need a sandbox, or an explicit --sandbox none."""
    if names and settings.enabled:
        try:
            settings.resolved(device)
        except InputError as e:
            raise InputError(f"{', '.join(names)}: outside code runs only sandboxed, and {e}; install gVisor (runsc) or "
                             "bubblewrap, or pass --sandbox none to run it unisolated (its rows are marked `unsandboxed`)") from None


# ---------------------------------------------------------------- what a worker is given


def _code_paths(spec) -> tuple[list[str], list[str]]:
    """(installation folders to bind read-only at their own path, the method's own installed roots: a plugin's
    distribution, or an installed module a submission names, bound at /fold/lib<i> and put on the worker's sys.path)."""
    package = Path(__file__).resolve().parents[1]  # the ratspain_bench package (an editable install points here)
    paths = {str(Path(sys.base_prefix).resolve()), str(Path(sys.prefix)), str(package)}
    real = Path(sys.executable).resolve()
    if not any(str(real).startswith(p + os.sep) for p in paths):
        paths.add(str(real.parent))
    roots = []
    if spec.folder is not None:
        module = spec.meta.get("entry_point", "").partition(":")[0]
        if module and not (spec.folder / f"{module.replace('.', '/')}.py").is_file():
            roots.append(_module_root(module))  # an installed module named by a submission folder
    elif spec.distribution:
        from importlib.metadata import distribution

        roots.append(str(Path(distribution(spec.distribution).locate_file("")).resolve()))
    extra = [r for r in dict.fromkeys(filter(None, roots)) if not any(r == p or r.startswith(p + os.sep) for p in paths)]
    kept = sorted(p for p in paths if not any(p != q and p.startswith(q + os.sep) for q in paths))  # nested: the parent's bind
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
    module = spec.meta.get("entry_point", "").partition(":")[0] if spec.folder is not None else ""
    return _imports_of(spec.name, spec.folder, spec.distribution, str(spec.target), module)


@lru_cache(maxsize=64)
def _imports_of(name: str, folder: Path | None, distribution: str, target: str, module: str = "") -> tuple[str, ...]:
    from .identity import _plugin_files, folder_files

    try:
        files = [f for _, f in folder_files(folder)] if folder is not None else _plugin_files(distribution, target)
        root = _module_root(module) if module and not (folder / f"{module.replace('.', '/')}.py").is_file() else None
        if root is not None:  # an installed module the folder names: its own files
            top = Path(root) / module.split(".")[0]
            files += sorted(top.rglob("*.py")) if top.is_dir() else [top.with_suffix(".py")]
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


def _request(spec, code: str | None, extra_path: list[str]) -> dict:
    return {"name": spec.name, "folder": code, "entry_point": spec.meta.get("entry_point") if spec.folder is not None else spec.target,
            "sys_path": extra_path}


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
    for d in Path(tempfile.gettempdir()).glob("ratspain-*-*"):
        m = SCRATCH.match(d.name)
        if m and not cgroup.owner_alive(f"ratspain-{m.group(2)}-") and d.is_dir() and not d.is_symlink():
            _remove_scratch(d)


# ---------------------------------------------------------------- who may arm a worker


LOCK = Path("/run/lock/ratspain-sandbox.lock")  # one fixed path: not $TMPDIR, which two harness processes may set apart


class _Gate:
    """One armed worker per harness process at a time; a worker of a kind that shares the host's kernel (bwrap, none)
    also holds the machine lock (a `flock` on `LOCK`, else /tmp/ratspain-sandbox.lock, shared by every harness process
    whatever its $TMPDIR) from the moment it may import the method until it is gone."""

    def __init__(self):
        self.fd: int | None = None
        self.holder = None

    def acquire(self, worker, machine: bool) -> float:
        """Hold the gate for `worker`; the seconds it waited for another harness's worker (reported, never billed)."""
        if self.holder is not None and self.holder is not worker:
            self.holder._end()  # never two armed workers in this process; `_end` releases the lock
        self.holder = worker
        if not machine or self.fd is not None:
            return 0.0
        fd = _open_lock()
        waited, start = 0.0, time.monotonic()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _holder(fd)
            print(f"[sandbox] waiting for the machine's sandbox, held by {who} (bubblewrap workers share the host's "
                  "kernel: one at a time per machine; gVisor's do not wait)", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
            waited = time.monotonic() - start
            print(f"[sandbox] waited {_duration(waited)} for the sandbox (held by {who}); not counted in any time of the "
                  "method", file=sys.stderr, flush=True)
        try:  # who holds it now, for whoever waits next
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n{' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]}\n".encode(), 0)
        except OSError:
            pass
        self.fd = fd
        return waited

    def release(self, worker) -> None:
        if self.holder is worker:
            if self.fd is not None:
                os.close(self.fd)  # closing the descriptor releases the flock
            self.fd, self.holder = None, None


_GATE = _Gate()


def _open_lock() -> int:
    flags = os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    for path in (LOCK, Path("/tmp") / LOCK.name):  # no /run/lock, or not ours: /tmp
        for mode in (os.O_RDWR, os.O_RDONLY):  # another user's lock file: lock it read-only, say nothing in it
            try:
                return os.open(path, flags | mode, 0o644)
            except OSError:
                continue
    raise OSError(f"cannot open the sandbox lock {LOCK}")


def _holder(fd: int) -> str:
    """`pid N (`command`)` of the process that holds the lock, as it wrote itself into the lock file."""
    try:
        pid, _, command = os.pread(fd, 512, 0).decode(errors="replace").strip().partition("\n")
    except OSError:
        pid, command = "", ""
    return f"pid {pid} (`{command}`)" if pid.isdigit() else "another process"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{seconds:.1f} s"


# ---------------------------------------------------------------- one worker


class Worker:
    """One worker process in its own sandbox and cgroup, for one task (one fold). It starts at once and loads the
    interpreter and its `preload` libraries (under runsc: it is restored from a snapshot of that start-up), then waits;
    `arm` lets it import the method, and `run` hands it its inputs. A spare started during the previous fold has paid
    its start-up by the time it is needed (`take`). Never reused: a fresh one per fold.
    `state`: a saved model's checked state folder, bound read-only at /fold/state (task `predict`).
    `task` "template": runs only the trusted start-up, to be checkpointed (`runsc.template`), never armed."""

    def __init__(self, spec, task: str, request: dict, settings: SandboxSettings, device: str = "cpu", spare: bool = False,
                 state: Path | None = None):
        sweep()
        self.settings, self.task, self.key = settings, task, _key(spec, task, request, settings, device, state)
        self.kind = settings.resolved(device)
        self.scratch = Path(tempfile.mkdtemp(prefix=f"ratspain-fold-{cgroup.owner()}-"))
        self.cgroup, self.log, self.proc, self.armed, self.image, self._how = None, None, None, False, None, None
        self.log_bounded, self.extra = False, []
        self.waited, self.started, self.seconds = 0.0, 0.0, 0.0  # the gate's wait; GO; GO to its end (`run`)
        self.runsc_state, self.runsc_id = self.scratch / "runsc", f"ratspain-{self.scratch.name}"
        try:
            for d in ("in", "out", "code", "state"):
                (self.scratch / d).mkdir()
            os.chmod(self.scratch, 0o700)
            for d in ("in", "code", "state"):
                os.chmod(self.scratch / d, 0o755)
            limit = settings.out_limit_mb(task)
            self.bounded = settings.enabled and _mount_tmpfs(self.scratch / "out", limit, outputs.STATE_ENTRIES + 10_000)
            if os.geteuid() == 0 and settings.enabled:
                os.chown(self.scratch / "out", NOBODY, NOBODY)
            code = self._code(spec)
            installed, self.extra = _code_paths(spec)
            libs = [f"{LIB}{i}" for i in range(len(self.extra))] if settings.enabled else self.extra
            job = {**request, "job": task, **_request(spec, code, libs)}
            if state is not None:
                job["state"] = STATE if settings.enabled else str(state)
            self._write("request.json", job)
            self._write("boot.json", {"preload": list(_preload(spec)), "announce": task == "template"})
            self.cgroup = Cgroup(settings.memory_mb, settings.pids)
            self.nice = ["nice", "-n", "19"] if spare else []  # a spare's start-up yields the cores to the fold being computed
            self._how = (spec, installed, device, state)
            self._launch(*self._how)
        except BaseException:
            self.close()
            raise

    def _write(self, name: str, content: dict) -> None:
        path = self.scratch / "in" / name
        path.write_text(json.dumps(content, default=str))
        os.chmod(path, 0o644)

    def _code(self, spec) -> str | None:
        """A submission's code as the worker sees it: a private copy of exactly the hashed files (`identity.snapshot`)."""
        self.code = None
        if spec.folder is None or self.task == "template":
            return None
        from .identity import snapshot

        self.code = snapshot(spec.folder).path
        return CODE if self.settings.enabled else str(self.code)

    def _binds(self, installed: list[str], state: Path | None):
        """(read-only, writable) binds: the installation at its own paths, then what is the worker's own, at fixed places."""
        ro = [(p, p) for p in installed] + [(str(self.scratch / "in"), IN), (str(self.code or self.scratch / "code"), CODE),
                                            (str(state or self.scratch / "state"), STATE)]
        ro += [(root, f"{LIB}{i}") for i, root in enumerate(self.extra)]
        return ro, [(str(self.scratch / "out"), OUT)]

    def _launch(self, spec, installed: list[str], device: str, state: Path | None, cold: bool = False) -> None:
        python = [sys.executable, "-I", "-m", "ratspain_bench.evaluation.worker"]
        fsize = self.settings.out_limit_mb(self.task) << 20
        limit = ["prlimit", f"--fsize={fsize}", "--"] if shutil.which("prlimit") else []
        env, pass_fds, filter_fd = _env(self.settings), (), None
        ro, rw = self._binds(installed, state)
        if self.kind == "none":
            cmd = limit + python + [str(self.scratch / "in"), str(self.scratch / "out")]
            env = {**env, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        elif self.kind == "bwrap":
            program = seccomp.program()
            if program is not None:
                (self.scratch / "seccomp.bpf").write_bytes(program)
                filter_fd = os.open(self.scratch / "seccomp.bpf", os.O_RDONLY)
                pass_fds = (filter_fd,)
            devices = [str(p) for p in sorted(Path("/dev").glob("nvidia*"))] if device.startswith(("cuda", "auto")) else []
            cmd = limit + bwrap.command(python + [IN, OUT], ro, rw, env, self.settings.tmp_mb, devices, filter_fd)
            env = None
        else:
            args = python + [IN, OUT]
            layout = {"args": args, "ro": ro[:len(installed)], "libs": len(self.extra), "env": env, "tmp_mb": self.settings.tmp_mb,
                      "fsize": fsize, "uid": os.geteuid(), "preload": list(_preload(spec))}
            if self.task != "template" and not cold:
                self.image = runsc.template(runsc.template_key(layout), lambda: self._template(spec, state),
                                            min(self.settings.time_limit, 900))
            bundle = runsc.write_bundle(self.scratch / "bundle", args, ro, rw, env, self.settings.tmp_mb, fsize)
            # no prlimit here: RLIMIT_FSIZE would also cap the Sentry's memory file; the bundle sets it inside
            cmd = runsc.host_view([src for src, _ in runsc.system_binds() + ro]) + runsc.command(
                self.runsc_state, bundle, self.runsc_id, self.image)
            env = runsc.env()
        self.log = open(self._log_path(), "w+b")
        try:
            self.proc = subprocess.Popen(self.cgroup.enter_prefix() + self.nice + cmd, stdin=subprocess.DEVNULL,
                                         stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=str(self.scratch),
                                         start_new_session=True, pass_fds=pass_fds)
        finally:
            if filter_fd is not None:
                os.close(filter_fd)

    def _template(self, spec, state):
        """A cold worker of the same layout that runs only the trusted start-up, to be checkpointed."""
        return Worker(spec, "template", {}, self.settings, "cpu", state=state)

    def _log_path(self) -> Path:
        """Where its stdout and stderr go. Under runsc on a tmpfs of --out-limit (gVisor does not apply the worker's
        RLIMIT_FSIZE to a descriptor of the host's), elsewhere capped by prlimit's."""
        folder = self.scratch / "log"
        if not folder.is_dir():
            folder.mkdir()
            self.log_bounded = self.kind == "runsc" and _mount_tmpfs(folder, self.settings.out_limit_mb(self.task), 16)
        return folder / "log.txt"

    def log_head(self, limit: int = 1 << 16) -> bytes:
        with open(self._log_path(), "rb") as f:
            return f.read(limit)

    def _log_full(self) -> bool:
        if not self.log_bounded:
            return False
        st = os.statvfs(self.scratch / "log")
        return st.f_bavail * st.f_frsize < 1 << 16

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
        """Let the worker import the method: once no other armed worker of this process lives (and, for a kind that
        shares the host's kernel, none on the machine); held until this worker is ended."""
        if not self.armed:
            self.waited += _GATE.acquire(self, machine=self.kind != "runsc")
            self.armed = True
            (self.scratch / "in" / "GO").write_text("")
            self.started = time.monotonic()

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
        rc, why = self._wait(limit)
        reason = "time_limit"
        if why is None and rc != 0 and self._restore_failed():
            rc, why = self._cold_again(limit)
        if why is None and self.cgroup.oom_killed():
            peak = self.cgroup.peak_mb()
            why, reason = f"memory limit of {self.settings.memory_mb} MiB exceeded" + (f" (peak {peak:.0f} MiB)" if peak else ""), "memory_limit"
        if why is None and rc != 0:
            why, reason = self._failure(rc)
        if why is not None:
            raise SandboxError(why, reason)
        return self.out

    def _wait(self, limit: float):
        try:
            rc, why = self.proc.wait(timeout=limit), None
        except subprocess.TimeoutExpired:
            rc, why = None, f"time limit of {limit:g} s exceeded"
        self.seconds = time.monotonic() - self.started  # from GO (the gate held) to its end: never the wait for the gate
        self._end()
        return rc, why

    def _restore_failed(self) -> bool:
        """runsc could not restore the snapshot (the installation changed under it): nothing of the worker ran."""
        return self.image is not None and not (self.out / "error.json").exists() and b"restor" in self.log_head()

    def _cold_again(self, limit: float):
        """The same worker once more, started cold (its inputs are in place); the stale snapshot is removed."""
        print(f"[sandbox] a gVisor snapshot could not be restored ({outputs.one_line(self.log_head().decode(errors='replace'), 200)}); "
              "starting the worker cold", file=sys.stderr, flush=True)
        runsc.forget(self.image)
        self.image, self.armed = None, False
        self.log.close()
        shutil.rmtree(self.runsc_state, ignore_errors=True)
        self._launch(*self._how, cold=True)
        self.arm()
        return self._wait(limit)

    def _failure(self, rc: int) -> tuple[str, str]:
        """Why a worker that exited with `rc` failed, and that reason's key (REASONS): its log past the limit, else its
        own account, else its exit, a limit it hit, its last output."""
        mb = self.settings.out_limit_mb(self.task)
        if self._log_full():
            return f"wrote more than the limit of {mb} MiB to its log", "output_limit"
        try:
            told = outputs.read_json(self.out / "error.json")
            reported, stage = outputs.one_line(told.get("error", "")), told.get("stage")
        except (OutputError, AttributeError):
            reported, stage = "", None
        if reported:
            return reported, f"crashed_{stage}" if stage in ("import", "fit", "predict") else "crashed"
        if rc in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ):
            return f"wrote a file larger than the limit of {mb} MiB", "output_limit"
        if self.bounded:
            st = os.statvfs(self.out)
            if st.f_bavail * st.f_frsize < 1 << 20 or st.f_favail == 0:
                return f"filled /fold/out (limit {mb} MiB)", "output_limit"
        how = f"killed by signal {signal.Signals(-rc).name}" if rc < 0 else f"exited with code {rc}"
        tail = outputs.one_line(outputs.log_tail(self.log.fileno()), 200) if self.log is not None else ""
        return how + (f"; last output: {tail}" if tail else ""), "crashed"

    def _end(self) -> None:
        """Kill the sandbox and anything left in its session and cgroup; the gate goes with it."""
        if self.proc is not None:
            alive = self.proc.poll() is None
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            if alive and self.kind == "runsc" and not self.cgroup.active:
                runsc.delete(self.runsc_state, self.runsc_id)
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
               device: str = "cpu", timeout: float | None = None) -> tuple[Path, Worker]:
    """Run one worker on `request` and `arrays`; (its out folder, the worker: `close` it; `seconds` its time).
    Raises SandboxError."""
    worker = Worker(spec, task, request, settings, device)
    try:
        return worker.run(arrays, timeout), worker
    except BaseException:
        worker.close()
        raise
