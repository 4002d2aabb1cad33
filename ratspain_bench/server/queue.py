"""The queue: procrastinate on the service's PostgreSQL (jobs taken with `FOR UPDATE SKIP LOCKED`, woken by
LISTEN/NOTIFY), one job per submission, and the workers that run them on any number of machines.

A worker (`run_worker`) is a procrastinate worker on the `submissions` queue plus a watch loop. procrastinate's
workers beat every `heartbeat` seconds; the watch loop of every worker puts back the jobs of workers silent for
`3 * heartbeat` (procrastinate's stalled-job recovery), so a killed worker's submission is taken over within about
`3 * heartbeat + heartbeat` seconds (the next watch). The job resumes from the finished folds of the runs folder
(`scoring`). The watch also defers submissions the server accepted but could not queue (it died in between).

Quota (`store.finish`): a failure of the submission's code counts; a fault of the harness (the scoring process
ends with no result, the same submission lost its worker `MAX_ATTEMPTS` times) is refunded.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import procrastinate

from . import archive, store
from .scoring import HARNESS_FAULT, reason_text

TASK = "ratspain:score"
QUEUE = "submissions"
MAX_ATTEMPTS = 3
NICE = 10  # a worker and its sandboxes yield the CPU to the HTTP server where they share a machine

bp = procrastinate.Blueprint()


def make_app(url: str) -> procrastinate.App:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    app.add_tasks_from(bp, namespace="ratspain")
    return app


async def defer(app: procrastinate.App, sid: int) -> int:
    return await app.configure_task(TASK, queue=QUEUE).defer_async(submission_id=sid)


@dataclass(frozen=True)
class WorkerSettings:
    db: str
    data: str
    runs_dir: Path
    device: str = "cpu"
    sandbox: str = "auto"
    heartbeat: float = 10.0


_SETTINGS: list[WorkerSettings] = []


def die_with_parent(sig=signal.SIGKILL):
    """A `preexec_fn`: the child gets `sig` when the thread that started it ends (PR_SET_PDEATHSIG), so no worker or
    scorer outlives the process that owns it."""
    import ctypes

    def setup() -> None:
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)
        except OSError:
            pass

    return setup


@bp.task(name="score", queue=QUEUE, pass_context=True)
def score(context, submission_id: int) -> None:
    """Run one submission (see the module doc); every outcome is written to its row, a fault of this worker too (where
    the database answers; else the watch of some worker defers it again, `store.dangling`)."""
    ws = _SETTINGS[0]
    try:
        _score(ws, submission_id)
    except DatabaseGone:
        raise
    except Exception as e:
        with _db(ws) as conn:
            store.finish(conn, submission_id, "error", reason=f"worker fault: {type(e).__name__}: {e}",
                         log=f"harness: worker fault: {type(e).__name__}: {e}\n")


class DatabaseGone(Exception):
    pass


def _db(ws: WorkerSettings, patience: float = 120.0):
    """A connection, waiting up to `patience` seconds for a database that is gone for a moment."""
    import time

    from ..errors import InputError

    deadline = time.monotonic() + patience
    while True:
        try:
            return store.connect(ws.db)
        except InputError as e:
            if time.monotonic() > deadline:
                raise DatabaseGone(str(e)) from None
            time.sleep(2)


def _score(ws: WorkerSettings, submission_id: int) -> None:
    with _db(ws) as conn:
        sub = store.start(conn, submission_id)
        if sub is None:
            return
        if sub["attempts"] > MAX_ATTEMPTS:
            store.finish(conn, submission_id, "error", reason=f"lost its worker {sub['attempts'] - 1} times",
                         log="harness: gave up after repeated lost workers\n")
            return
        store.append_log(conn, submission_id, f"attempt {sub['attempts']} on {os.uname().nodename} (pid {os.getpid()})\n")
    work = ws.runs_dir / "server" / "submissions" / str(submission_id)
    shutil.rmtree(work / "src", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    folder = archive.unpack(sub["archive"], work / "src", archive.Limits(**sub["limits"].get("archive", {})))
    result = work / "result.json"
    result.unlink(missing_ok=True)
    limits = sub["limits"]
    with _db(ws) as conn:
        phase = store.get_meta(conn, "split")
    if phase:  # the public phase: the public images only (`partition`)
        (work / "public.json").write_text(phase)
    request = {"public": str(work / "public.json") if phase else None, "folder": str(folder), "method": sub["name"],
               "team": sub["team"], "data": ws.data,
               "runs_dir": str(ws.runs_dir), "sandbox": ws.sandbox, "device": ws.device, "result": str(result),
               "time_limit": float(limits.get("time_limit", 1800)), "memory_mb": int(limits.get("memory_mb", 8192))}
    (work / "request.json").write_text(json.dumps(request))
    with open(work / "scoring.log", "wb") as log:
        rc = subprocess.call([sys.executable, "-m", "ratspain_bench.server.scoring", str(work / "request.json")],
                             stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent())
    text = (work / "scoring.log").read_text(errors="replace")[-100_000:]
    with _db(ws) as conn:
        if rc == 0 and result.is_file():
            out = json.loads(result.read_text())
            if out["status"] == "scored":
                store.finish(conn, submission_id, "scored", f1=out["f1"], accuracy=out["accuracy"], record=out["record"],
                             predictions=out["predictions"], log=text, errors=_errors(out["predictions"]))
            elif out["status"] == "error":
                store.finish(conn, submission_id, "error", reason="the harness failed", log=text + f"\nharness: {out['log']}\n")
            else:
                store.finish(conn, submission_id, "failed", reason=reason_text(out["reason"], out.get("rule", "")),
                             log=text + f"\nharness: {out['log']}\n")
        else:
            why = "the scoring process ended without a result" + (" (harness fault)" if rc == HARNESS_FAULT else f" (exit {rc})")
            store.finish(conn, submission_id, "error", reason=why, log=text)


def _errors(predictions_csv: str) -> list[int]:
    """Per-image 0/1 errors, in image order (the parameter-free Ladder's losses)."""
    import io

    import pandas as pd

    t = pd.read_csv(io.StringIO(predictions_csv), dtype={"image": str}).sort_values("image")
    return (t["y_true"] != t["y_pred"]).astype(int).tolist()


async def _watch(app: procrastinate.App, ws: WorkerSettings) -> None:
    """Put back the jobs of silent workers; defer accepted submissions that have no job."""
    while True:
        await asyncio.sleep(ws.heartbeat)
        try:
            for job in await app.job_manager.get_stalled_jobs(queue=QUEUE, seconds_since_heartbeat=3 * ws.heartbeat):
                await app.job_manager.retry_job(job)
            with store.connect(ws.db) as conn:
                for sid in store.orphans(conn, older_s=60) + store.dangling(conn):
                    store.set_job(conn, sid, await defer(app, sid))
        except Exception as e:  # the database gone for a moment: try again at the next beat
            print(f"[worker] watch: {type(e).__name__}: {e}", file=sys.stderr, flush=True)


def run_worker(ws: WorkerSettings, concurrency: int = 1) -> None:
    """A worker until SIGINT/SIGTERM (graceful: the running job ends first)."""
    from ..data import load_dataset

    store.init(ws.db)
    dataset = load_dataset(ws.data)
    with store.connect(ws.db) as conn:
        want = store.get_meta(conn, "fingerprint")
    if want and want != dataset.fingerprint:
        from ..errors import InputError

        raise InputError(f"{ws.data}: not the server's dataset (fingerprint {dataset.fingerprint}, the server's {want})")
    _SETTINGS[:] = [ws]
    app = make_app(ws.db)

    async def main() -> None:
        async with app.open_async():
            watch = asyncio.create_task(_watch(app, ws))
            try:
                await app.run_worker_async(queues=[QUEUE], concurrency=concurrency, update_heartbeat_interval=ws.heartbeat,
                                           stalled_worker_timeout=3 * ws.heartbeat, delete_jobs="never")
            finally:
                watch.cancel()

    os.environ.setdefault("TMPDIR", tempfile.gettempdir())
    os.nice(NICE)
    asyncio.run(main())
