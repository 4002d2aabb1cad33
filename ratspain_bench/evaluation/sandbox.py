"""Outside methods (submissions, untrusted plugins) run here: each fold in a fresh worker process inside a
bubblewrap sandbox, with limits; the harness keeps the test labels and scores.

The worker (`python -I -m ratspain_bench.evaluation.worker`) sees:
- read-only: the Python installation and its environment, the `ratspain_bench` package, the method's
  own code (submission folder or plugin distribution), and this fold's inputs: the training rats'
  images, labels, subject ids and keys and the test rat's images, subject id and keys (`/fold/in`);
- writable: a private tmpfs `/tmp` (its HOME) and `/fold/out`, where it writes its predictions;
- nothing else: not the dataset, the manifest, the runs folder, the caches, other folds' inputs, the
  network (its own empty network namespace), nor the harness's processes (its own PID namespace:
  ending it ends every descendant). Its environment is cleared.
As root, the worker runs as uid/gid 65534 (nobody) with no capabilities and `no_new_privs`; as a
normal user, in a user namespace with that user's uid.

Limits: wall clock per fold (the whole sandbox is killed), and, where a cgroup can be made (v1
`memory` + `pids` as root, or a delegated v2 subtree), memory counting shared mappings and tmpfs,
and a process count. Without a cgroup only the time limit is enforced. `--no-sandbox` runs the same
worker without bubblewrap (a fresh process per fold, no isolation); such rows are marked `unsandboxed`.

Saved models of outside methods (`train`, `predict`) use the same workers: task `train` fits on every
animal and `save`s into `/fold/out/state`, which the harness accepts only as plain files and folders of
bounded size (`check_tree`, `copy_tree`); task `predict` gets a checked private copy of that state bound
read-only at `/fold/state` (and the model's own copy of the code), loads it and scores one batch.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..methods.base import Predictions

NOBODY = 65534
IN, OUT, STATE = "/fold/in", "/fold/out", "/fold/state"
STATE_ENTRIES = 100_000  # files and folders a saved state may hold


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

    @property
    def mode(self) -> str:
        return "bwrap" if self.enabled else "none"


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


# ---------------------------------------------------------------- cgroups


class Cgroup:
    """A throw-away cgroup with memory and pids limits (v1 as root, or a writable v2 subtree); inert when none can be made."""

    def __init__(self, memory_mb: int, pids: int):
        self.dirs: list[Path] = []
        self.version = 0
        name = f"ratspain-{os.getpid()}-{time.monotonic_ns()}"
        try:
            if Path("/sys/fs/cgroup/cgroup.controllers").is_file():
                self._make_v2(name, memory_mb, pids)
            elif Path("/sys/fs/cgroup/memory").is_dir():
                self._make_v1(name, memory_mb, pids)
        except OSError:
            self.remove()
            self.dirs, self.version = [], 0

    @staticmethod
    def _own(controller: str) -> str:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, ctrls, path = line.split(":", 2)
            if controller in ctrls.split(",") or (controller == "" and ctrls == ""):
                return path
        return "/"

    def _make_v1(self, name: str, memory_mb: int, pids: int) -> None:
        for ctrl, limits in (("memory", {"memory.limit_in_bytes": memory_mb << 20, "memory.memsw.limit_in_bytes": memory_mb << 20}),
                             ("pids", {"pids.max": pids})):
            base = Path("/sys/fs/cgroup") / ctrl
            mine = base / self._own(ctrl).lstrip("/")
            d = (mine if mine.is_dir() else base) / name
            d.mkdir()
            self.dirs.append(d)
            for f, v in limits.items():
                if (d / f).exists():
                    (d / f).write_text(str(v))
        self.version = 1

    def _make_v2(self, name: str, memory_mb: int, pids: int) -> None:
        d = Path("/sys/fs/cgroup") / self._own("").lstrip("/") / name
        d.mkdir()
        self.dirs.append(d)
        (d / "memory.max").write_text(str(memory_mb << 20))
        (d / "memory.swap.max").write_text("0") if (d / "memory.swap.max").exists() else None
        (d / "pids.max").write_text(str(pids))
        self.version = 2

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
        out = set()
        for d in self.dirs:
            try:
                out |= {int(x) for x in (d / "cgroup.procs").read_text().split()}
            except OSError:
                pass
        return sorted(out)

    def kill(self) -> None:
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)

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
        self.kill()
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


@lru_cache(maxsize=1)
def cgroups_available() -> bool:
    """Whether a throw-away cgroup with memory and pids limits can be made here."""
    cg = Cgroup(64, 16)
    ok = cg.active
    cg.remove()
    return ok


# ---------------------------------------------------------------- the command


def _bwrap_args(ro: list[tuple[str, str]], rw: list[tuple[str, str]], tmp_mb: int = 64, devices=()) -> list[str]:
    args = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session"]
    if os.geteuid() != 0:
        args.insert(2, "--disable-userns")
        args.insert(2, "--unshare-user")
    else:  # privileged bwrap: no user namespace, the command drops to nobody itself (setpriv, below)
        args[1:2] = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup"]
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


def _env(settings: SandboxSettings) -> dict:
    threads = str(settings.threads or os.cpu_count() or 1)
    return {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "TMPDIR": "/tmp"}


def _command(spec, settings: SandboxSettings, task: str, scratch: Path, device: str, state: Path | None = None) -> list[str]:
    python = [sys.executable, "-I", "-m", "ratspain_bench.evaluation.worker", task]
    if not settings.enabled:
        return python + [str(scratch / "in"), str(scratch / "out")]
    ro_paths, _ = _code_paths(spec)
    devices = [str(p) for p in sorted(Path("/dev").glob("nvidia*"))] if device.startswith(("cuda", "auto")) else []
    ro = [(p, p) for p in ro_paths] + [(str(scratch / "in"), IN)] + ([(str(state), STATE)] if state is not None else [])
    args = _bwrap_args(ro, [(str(scratch / "out"), OUT)], settings.tmp_mb, devices)
    args += ["--clearenv", *[x for k, v in _env(settings).items() for x in ("--setenv", k, v)], "--chdir", "/tmp", "--"]
    if os.geteuid() == 0:
        args += ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all",
                 "--bounding-set=-all", "--no-new-privs"]
    return args + python + [IN, OUT]


# ---------------------------------------------------------------- running a worker


def _request(spec, extra_path: list[str]) -> dict:
    return {"name": spec.name, "folder": None if spec.folder is None else str(spec.folder),
            "entry_point": spec.meta.get("entry_point") if spec.folder is not None else spec.target, "sys_path": extra_path}


class Worker:
    """One worker process in its own sandbox and cgroup, for one task (one fold). It starts at once: it
    imports the method, then waits until `run` hands it its inputs, so a spare started during the previous
    fold has paid its imports by the time it is needed (`take`). Never reused: a fresh one per fold.
    `state`: a saved model's checked state folder, bound read-only at /fold/state (task `predict`)."""

    def __init__(self, spec, task: str, request: dict, settings: SandboxSettings, device: str = "cpu", spare: bool = False,
                 state: Path | None = None):
        self.settings, self.key = settings, _key(spec, task, request, settings, device, state)
        self.scratch = Path(tempfile.mkdtemp(prefix="ratspain-fold-"))
        self.cgroup = None
        try:
            (self.scratch / "in").mkdir()
            (self.scratch / "out").mkdir()
            os.chmod(self.scratch, 0o700)
            os.chmod(self.scratch / "in", 0o755)
            if os.geteuid() == 0 and settings.enabled:
                os.chown(self.scratch / "out", NOBODY, NOBODY)
            _, extra = _code_paths(spec)
            if state is not None:
                request = {**request, "state": STATE if settings.enabled else str(state)}
            (self.scratch / "in" / "request.json").write_text(json.dumps({**request, **_request(spec, extra)}, default=str))
            os.chmod(self.scratch / "in" / "request.json", 0o644)
            self.cgroup = Cgroup(settings.memory_mb, settings.pids)
            nice = ["nice", "-n", "19"] if spare else []  # a spare's imports yield the cores to the fold being computed
            cmd = self.cgroup.enter_prefix() + nice + _command(spec, settings, task, self.scratch, device, state)
            env = None if settings.enabled else {**_env(settings), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            self.log = open(self.scratch / "log.txt", "wb")
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                         cwd=str(self.scratch), start_new_session=True)
        except BaseException:
            self.close()
            raise

    @property
    def out(self) -> Path:
        return self.scratch / "out"

    def promote(self) -> None:
        """A spare becomes the fold's worker: back to normal priority (where this process may raise it)."""
        for pid in self.cgroup.pids() if self.cgroup.active else [self.proc.pid]:
            try:
                os.setpriority(os.PRIO_PROCESS, pid, 0)
            except OSError:
                pass

    def run(self, arrays: dict[str, np.ndarray], timeout: float | None = None) -> Path:
        """Hand the worker its inputs and wait (at most `timeout`, default the time limit); its out folder.
        Raises SandboxError naming why it failed; `close` afterwards either way."""
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
            reported = _read_error(self.out)
            tail = (self.scratch / "log.txt").read_text(errors="replace").strip().splitlines()[-1:] or [""]
            why = reported or (f"killed by signal {signal.Signals(-rc).name}" if rc < 0 else f"exited with code {rc}") + \
                (f"; last output: {tail[0][:200]}" if tail[0] and not reported else "")
        if why is not None:
            raise SandboxError(why)
        return self.out

    def _end(self) -> None:
        """Kill the sandbox and anything left in its session and cgroup."""
        proc = getattr(self, "proc", None)
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        if self.cgroup is not None:
            self.cgroup.kill()

    def close(self) -> None:
        self._end()
        if self.cgroup is not None:
            self.cgroup.remove()
        if getattr(self, "log", None) is not None:
            self.log.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


def _key(spec, task, request, settings, device, state=None) -> str:
    key = [spec.name, str(spec.folder), str(spec.target), task, request, repr(settings), device]
    return json.dumps(key + [str(state)] if state is not None else key, sort_keys=True, default=str)


_SPARES: dict[str, Worker] = {}


def take(spec, task: str, request: dict, settings: SandboxSettings, device: str = "cpu", spare: bool = False,
         state: Path | None = None) -> Worker:
    """A started worker for this task: the waiting spare when one matches, else a new one. With `spare`, start
    the next one now (for the next fold of the same method), so its imports overlap this fold's work."""
    key = _key(spec, task, request, settings, device, state)
    worker = _SPARES.pop(key, None)
    if worker is not None and worker.proc.poll() is not None:  # it died while waiting
        worker.close()
        worker = None
    if worker is None:
        worker = Worker(spec, task, request, settings, device, state=state)
    else:
        worker.promote()
    if spare:
        _SPARES[key] = Worker(spec, task, request, settings, device, spare=True, state=state)
    return worker


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


def _read_error(out: Path) -> str:
    """The worker's own account of a failure (untrusted text: one line, printable, bounded)."""
    try:
        text = json.loads((out / "error.json").read_text())["error"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    return "".join(ch for ch in str(text) if ch.isprintable())[:600]


def _strings(values) -> np.ndarray:
    return np.asarray([str(v) for v in values], dtype=str)


def _fold_request(task) -> dict:
    return {"params": task.params, "seed": task.seed, "device": task.device, "profile": task.profile, "task": task.task}


def prestart(task) -> None:
    """Start the worker of `task`'s fold now (it imports the method while the harness prepares the run)."""
    key = _key(task.spec, "fold", _fold_request(task), task.sandbox, task.device)
    if key not in _SPARES:
        _SPARES[key] = Worker(task.spec, "fold", _fold_request(task), task.sandbox, task.device)


def train_arrays(train) -> dict[str, np.ndarray]:
    """A TrainSet as the worker's `train_*` arrays (labels, subjects, keys, pose columns, AU grades)."""
    arrays = {"train_images": np.ascontiguousarray(train.images), "train_labels": np.asarray(train.labels, dtype=np.int64),
              "train_subjects": _strings(train.subjects), "train_keys": _strings(train.keys)}
    arrays.update(_meta_arrays("train", train.meta))
    for au, grades in (train.au or {}).items():
        arrays[f"train_au_{au}"] = np.asarray(grades, dtype=np.int64)
    return arrays


def test_arrays(test) -> dict[str, np.ndarray]:
    """A TestSet as the worker's `test_*` arrays (no labels exist in a TestSet)."""
    return {"test_images": np.ascontiguousarray(test.images), "test_subjects": _strings(test.subjects),
            "test_keys": _strings(test.keys), **_meta_arrays("test", test.meta)}


def _meta_arrays(part: str, meta) -> dict[str, np.ndarray]:
    arrays = {}
    if meta is not None:
        for col in meta.columns:
            values = meta[col].to_numpy()
            arrays[f"{part}_meta_{col}"] = _strings(values) if values.dtype == object else values.astype(float)
    return arrays


def _read_predictions(out: Path) -> Predictions:
    try:
        with np.load(out / "predictions.npz", allow_pickle=False) as z:
            au = {k[len("au_"):]: np.array(z[k]) for k in z.files if k.startswith("au_")}
            return Predictions(np.array(z["labels"]), np.array(z["scores"]), au=au or None)
    except (OSError, ValueError, KeyError) as e:
        raise SandboxError(f"no readable predictions from the worker ({type(e).__name__})") from None


def fit_predict(task, train, test) -> tuple[Predictions, float, dict]:
    """One fold of an outside method in its sandbox: (its predictions, unchecked; seconds; extra fold metrics).
    With `task.prefetch` (more folds of this method follow), the next fold's worker starts now."""
    settings = task.sandbox
    arrays = {**train_arrays(train), **test_arrays(test)}
    start = time.perf_counter()
    worker = take(task.spec, "fold", _fold_request(task), settings, task.device, spare=task.prefetch)
    try:
        pred = _read_predictions(worker.run(arrays))
    finally:
        worker.close()
    return pred, time.perf_counter() - start, {}


# ---------------------------------------------------------------- saved models of outside methods


def check_tree(root: Path, limit_mb: int, name: str) -> int:
    """Total bytes of `root`, which must hold only plain files and folders (no symlinks, devices, fifos, sockets),
    at most `limit_mb` MiB and STATE_ENTRIES entries; else an InputError naming the method and the entry."""
    root, total, entries, limit = Path(root), 0, 0, limit_mb << 20
    st = os.lstat(root)
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
    followed; the byte limit is enforced again while copying."""
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
            fd = os.open(Path(d) / f, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as r, open(here / f, "wb") as w:
                if not stat.S_ISREG(os.fstat(r.fileno()).st_mode):
                    raise InputError(f"{name}: its saved state holds a file that is not a plain file")
                while chunk := r.read(1 << 20):
                    left -= len(chunk)
                    if left < 0:
                        raise InputError(f"{name}: its saved state exceeds the limit of {limit_mb} MiB")
                    w.write(chunk)
            os.chmod(here / f, 0o644)


def train_state(spec, request: dict, train, settings: SandboxSettings, device: str = "cpu") -> tuple[Path, dict, callable]:
    """Fit an outside method on `train` and `save` it, in a sandboxed worker: (its state folder, checked by `check_tree`;
    what it reported: {"predict_batch": int}; cleanup). InputError naming the method when it fails."""
    try:
        out, cleanup = run_worker(spec, "train", request, train_arrays(train), settings, device)
    except SandboxError as e:
        raise InputError(f"{spec.name}: training in its sandbox failed: {e}") from None
    try:
        state = out / "state"
        check_tree(state, settings.state_mb, spec.name)
        info = {"predict_batch": 64}
        try:
            fd = os.open(out / "info.json", os.O_RDONLY | os.O_NOFOLLOW)  # untrusted: never a link out of the sandbox
            with os.fdopen(fd, "rb") as f:
                told = json.loads(f.read(4096))
            batch = told.get("predict_batch") if isinstance(told, dict) else None
            if isinstance(batch, int) and not isinstance(batch, bool):
                info["predict_batch"] = max(1, min(batch, 1024))
        except (OSError, ValueError):
            pass
        return state, info, cleanup
    except BaseException:
        cleanup()
        raise


def predict_state(spec, request: dict, state: Path, test, settings: SandboxSettings, device: str = "cpu",
                  spare: bool = False) -> Predictions:
    """One batch scored by a saved outside model in a sandboxed worker (`state` bound read-only); unchecked."""
    worker = take(spec, "predict", request, settings, device, spare=spare, state=state)
    try:
        return _read_predictions(worker.run(test_arrays(test)))
    finally:
        worker.close()


def describe(spec, profile: str | None, param_sets: list[dict], settings: SandboxSettings) -> dict:
    """The method's declarations and the full config of each param set, computed in a sandboxed worker.

    Returns {"configs": [dict | {"error": str}], "search_space": dict, "sensitivity_grid": dict, "fields": [names]}."""
    request = {"profile": profile, "param_sets": param_sets}
    try:
        out, cleanup = run_worker(spec, "describe", request, {}, settings, "cpu", timeout=min(settings.time_limit, 300))
    except SandboxError as e:
        raise InputError(f"{spec.name}: cannot load the method in its sandbox: {e}") from None
    try:
        info = json.loads((out / "describe.json").read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{spec.name}: its sandboxed worker gave no description ({type(e).__name__})") from None
    finally:
        cleanup()
    if not (isinstance(info, dict) and isinstance(info.get("configs"), list) and len(info["configs"]) == len(param_sets)):
        raise InputError(f"{spec.name}: its sandboxed worker gave a malformed description")
    for c in info["configs"]:
        if not isinstance(c, dict) or not all(isinstance(k, str) and isinstance(v, (int, float, str, bool, type(None)))
                                              for k, v in c.items()):
            raise InputError(f"{spec.name}: its sandboxed worker gave a malformed config")
    return info
