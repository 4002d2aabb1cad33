"""Where fold jobs run: a process pool on this machine (one worker per core, or one per GPU), or a
SLURM cluster through `submitit`. No scheduler of our own.

The runner plans the missing folds (job folders without `DONE`), does each method's shared work, and
hands the folds of trusted methods to a launcher as `fold_job(task, dataset, cache)` calls; a
launcher returns a `concurrent.futures.Future` per fold. The runner alone reads the job folders and
writes MLflow (fold child runs, the completed parent), so a launcher or a job that dies leaves only
folders without `DONE`, which the next call runs again. Outside (sandboxed) methods always run here,
one sandboxed worker per fold.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import threading
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

LAUNCHERS = ("local", "submitit")


@dataclass(frozen=True)
class LaunchSettings:
    """`--launcher`, `--devices` and the submitit options (the SLURM ones are ignored by its local executor)."""

    launcher: str = "local"  # local | submitit
    devices: tuple[str, ...] = ()  # cuda:0,cuda:1,...: one local worker per GPU, one fold per GPU at a time
    cluster: str | None = None  # submitit: None picks SLURM where `sbatch` exists, else local processes; or local | slurm | debug
    folder: Path | None = None  # submitit's logs and pickles (default RUNS_DIR/submitit)
    partition: str | None = None  # SLURM partition
    time_min: int = 120  # SLURM time limit per fold job, minutes
    gpus_per_job: int = 0
    cpus_per_job: int = 4
    array_parallelism: int = 32  # SLURM: at most this many fold jobs queued or running at once

    def __post_init__(self):
        if self.launcher not in LAUNCHERS:
            raise InputError(f"--launcher {self.launcher!r}: expected one of {', '.join(LAUNCHERS)}")
        for d in self.devices:
            if not (d == "cpu" or d.startswith("cuda:") and d[5:].isdigit()):
                raise InputError(f"--devices {d!r}: expected a comma-separated list like cuda:0,cuda:1")
        if self.devices and self.launcher != "local":
            raise InputError("--devices is for --launcher local (on SLURM, ask for GPUs per job with --gpus-per-job)")


def parse_devices(text: str | None) -> tuple[str, ...]:
    return tuple(d.strip() for d in (text or "").split(",") if d.strip())


def fold_job(task, dataset, cache: str | None = None) -> dict:
    """One fold wherever a launcher runs it: images from the (shared) cache, the one fold path, its summary.
    The summary also names the worker (host:pid) and the GPU it saw (`CUDA_VISIBLE_DEVICES`)."""
    if cache:
        os.environ["RATSPAIN_CACHE_DIR"] = cache
    from ..data.cache import load_images
    from .fold import image_size, run_fold

    images, _ = load_images(dataset, image_size(task.params))
    summary = run_fold(task, dataset, images)
    return {**summary, "worker": f"{socket.gethostname()}:{os.getpid()}",
            "worker_device": os.environ.get("CUDA_VISIBLE_DEVICES", "")}


def _init_worker(threads: int, gpu: str | None) -> None:
    """A local worker: `threads` torch threads; with a GPU, only that GPU visible (as `cuda`)."""
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[k] = str(threads)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    import torch

    torch.set_num_threads(threads)


class Launcher:
    """`submit(task, dataset)` -> a Future of the fold's summary; `close()` stops what is not started.

    Folds wait in order until the launcher has room (`_has_room`), then `_start` hands them on; the local
    pool overrides `submit` (its executor queues by itself)."""

    def __init__(self):
        self.waiting: deque = deque()
        self.lock = threading.RLock()  # a fold that ends at once calls back inside `_dispatch`

    def submit(self, task, dataset) -> Future:
        out: Future = Future()
        with self.lock:
            self.waiting.append((out, task, dataset))
        self._dispatch()
        return out

    def _dispatch(self) -> None:
        with self.lock:
            while self.waiting and self._has_room():
                out, task, dataset = self.waiting.popleft()
                if out.set_running_or_notify_cancel():
                    self._start(out, task, dataset)

    def _has_room(self) -> bool:
        return True

    def _start(self, out: Future, task, dataset) -> None:
        """Run the fold somewhere and settle `out` with its summary or its error."""

    def close(self) -> None:
        with self.lock:
            for out, *_ in self.waiting:
                out.cancel()
            self.waiting.clear()


class LocalPool(Launcher):
    """`jobs` spawned processes with cores // jobs threads each: folds of several methods share the cores."""

    def __init__(self, jobs: int):
        import multiprocessing as mp

        super().__init__()
        threads = max(1, (os.cpu_count() or 1) // jobs)
        self.pool = ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=(threads, None))

    def submit(self, task, dataset) -> Future:
        return self.pool.submit(fold_job, task, dataset, os.environ.get("RATSPAIN_CACHE_DIR"))

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


class DevicePool(Launcher):
    """One worker process per device, each seeing only its GPU; a fold waits until a device is free."""

    def __init__(self, devices: tuple[str, ...]):
        import multiprocessing as mp

        super().__init__()
        threads = max(1, (os.cpu_count() or 1) // len(devices))
        ctx = mp.get_context("spawn")
        self.workers = [(d, ProcessPoolExecutor(1, mp_context=ctx, initializer=_init_worker,
                                                initargs=(threads, d.split(":")[1] if d != "cpu" else None)))
                        for d in devices]
        self.free = deque(range(len(devices)))

    def _has_room(self) -> bool:
        return bool(self.free)

    def _start(self, out: Future, task, dataset) -> None:
        i = self.free.popleft()
        device, pool = self.workers[i]
        task = dataclasses.replace(task, device="cpu" if device == "cpu" else "cuda")  # the worker sees one GPU
        inner = pool.submit(fold_job, task, dataset, os.environ.get("RATSPAIN_CACHE_DIR"))
        inner.add_done_callback(lambda f: self._finished(i, out, f))

    def _finished(self, i: int, out: Future, inner: Future) -> None:
        with self.lock:
            self.free.append(i)
        try:
            out.set_result(inner.result())
        except BaseException as e:  # the fold's error travels to the runner
            out.set_exception(e)
        self._dispatch()

    def close(self) -> None:
        super().close()
        for _, pool in self.workers:
            pool.shutdown(cancel_futures=True)


class Submitit(Launcher):
    """Each fold a submitit job (a SLURM job on a cluster, a local process otherwise); at most `array_parallelism`
    jobs in flight on SLURM, one per core with the local executor (each job is a fresh Python process); a thread
    submits waiting folds as jobs finish and turns finished jobs into Futures. Job folders and the cache must be on
    a file system the nodes share."""

    POLL_S = 0.2

    def __init__(self, settings: LaunchSettings, runs_dir: Path):
        import submitit

        super().__init__()
        folder = Path(settings.folder or Path(runs_dir) / "submitit").resolve()
        cluster = settings.cluster or submitit.AutoExecutor.which()
        if cluster != "slurm":  # local jobs: one existing folder (a job's own `%j` folder is made by the submitting
            folder.mkdir(parents=True, exist_ok=True)  # process, and the job could open its log before that)
        self.executor = submitit.AutoExecutor(folder=str(folder / "%j" if cluster == "slurm" else folder), cluster=cluster)
        params = dict(timeout_min=settings.time_min, cpus_per_task=settings.cpus_per_job, name="ratspain-fold")
        if settings.gpus_per_job:
            params["gpus_per_node"] = settings.gpus_per_job
        if self.executor.cluster == "slurm" and settings.partition:
            params["slurm_partition"] = settings.partition
        self.executor.update_parameters(**params)
        self.limit = settings.array_parallelism if self.executor.cluster == "slurm" else (os.cpu_count() or 1)
        self.jobs: list[tuple[object, Future]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _has_room(self) -> bool:
        return len(self.jobs) < self.limit

    def _start(self, out: Future, task, dataset) -> None:
        try:
            job = self.executor.submit(fold_job, task, dataset, os.environ.get("RATSPAIN_CACHE_DIR"))
        except Exception as e:  # sbatch refused it: this fold fails, the others go on
            out.set_exception(RuntimeError(f"submitit could not submit the fold: {e}"))
            return
        self.jobs.append((job, out))

    def _watch(self) -> None:
        while not self.stop.wait(self.POLL_S):
            with self.lock:
                running = list(self.jobs)
            for job, out in running:
                if not job.done():
                    continue
                try:
                    out.set_result(job.result())
                except BaseException as e:
                    out.set_exception(RuntimeError(f"submitit job {job.job_id}: {_last_error(str(e)) or type(e).__name__}"))
                with self.lock:
                    self.jobs.remove((job, out))
            self._dispatch()

    def close(self) -> None:
        """Stop watching and submitting; jobs already submitted keep running and write their folders (the next call
        collects them); folds not yet submitted are left for the next call."""
        self.stop.set()
        self.thread.join(timeout=5)
        super().close()


def _last_error(trace: str) -> str:
    """The exception line of a job's traceback (submitit reports a failed job with its whole trace)."""
    import re

    lines = [ln.strip() for ln in trace.splitlines() if re.match(r"^\s*[\w.]+(Error|Exception|Exit|Interrupt)\b", ln)]
    return lines[-1] if lines else (trace.strip().splitlines() or [""])[0]


def check(settings: LaunchSettings) -> None:
    """What the launcher needs is here, before any work."""
    if settings.launcher == "submitit":
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise InputError("--launcher submitit needs the submitit package (pip install submitit)") from None


def make_launcher(settings: LaunchSettings, jobs: int, runs_dir: Path) -> Launcher:
    if settings.launcher == "submitit":
        return Submitit(settings, runs_dir)
    if settings.devices:
        return DevicePool(settings.devices)
    return LocalPool(jobs)

