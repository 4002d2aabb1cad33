"""Several workers on one Optuna study: who runs a trial, and trials left behind by a dead worker.

Every trial records `worker` (host:pid) and a `heartbeat` time, refreshed by a background thread
while it runs. Before choosing work a worker marks as FAIL each RUNNING trial whose worker is a dead
process on this host, or whose heartbeat is older than `STALE_AFTER_S` (another host): its grid
point or fold is then free to be run again, so a `kill -9` never loses a point. This works with every
storage (journal file, SQLite, PostgreSQL), unlike Optuna's own heartbeat, which needs an RDB.
"""
from __future__ import annotations

import os
import socket
import threading
import time

HEARTBEAT_S = 15.0
STALE_AFTER_S = 180.0


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether a process of this host has this pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def gone_here(worker: str) -> bool | None:
    """For a `worker_id`: whether its process is gone, when it is a process of this host (another than this one);
    None for another host's, or for text that is no worker id."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    return int(pid) != os.getpid() and not pid_alive(int(pid))


def is_stale(trial, now: float | None = None) -> bool:
    """A RUNNING trial whose worker is gone."""
    now = time.time() if now is None else now
    gone = gone_here(str(trial.user_attrs.get("worker", "")))
    if gone is not None:
        return gone
    beat = trial.user_attrs.get("heartbeat")
    if beat is None:
        start = trial.datetime_start.timestamp() if trial.datetime_start else now
        return now - start > STALE_AFTER_S
    return now - float(beat) > STALE_AFTER_S


def fail_stale_trials(study) -> list[int]:
    """Mark trials left RUNNING by dead workers as FAIL; returns their numbers."""
    from optuna.trial import TrialState

    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if is_stale(t):
            try:
                study._storage.set_trial_user_attr(t._trial_id, "error", "worker died (stale trial)")
                if study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                    failed.append(t.number)
            except Exception:  # another worker marked it first
                continue
    return failed


class Heartbeat:
    """`with Heartbeat(trial):` records the worker and refreshes `heartbeat` until the block ends."""

    def __init__(self, trial, interval: float = HEARTBEAT_S):
        self.trial, self.interval = trial, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.trial.storage.set_trial_user_attr(self.trial._trial_id, "heartbeat", time.time())
            except Exception:  # the trial finished meanwhile, or the storage blinked: next beat
                continue

    def __enter__(self):
        self.trial.set_user_attr("worker", worker_id())
        self.trial.set_user_attr("heartbeat", time.time())
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
