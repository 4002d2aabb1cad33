"""Where Optuna keeps studies: a local journal file by default, any Optuna storage by URL.

`--storage` accepts
- nothing: `RUNS_DIR/optuna.journal`, an Optuna journal file (`JournalFileBackend`). Appends are
  serialised by a file lock, so several worker processes on one machine share it safely; this is
  Optuna's recommended local multi-process storage and needs no database;
- `journal:PATH` or a path ending in `.journal`/`.log`: a journal file elsewhere;
- `sqlite:///PATH`: `RDBStorage` with a 60 s SQLite busy timeout (works for a few local workers;
  SQLite locks the whole file per write, so prefer the journal for more);
- `postgresql://...`, `mysql://...` or any SQLAlchemy URL: `RDBStorage`, for workers on several machines;
- `redis://...`: a journal kept in Redis (needs the `redis` package).

Workers on several machines share one study by pointing `--storage` at one database and using the
same `--study-name`; each claims its own trials (Optuna numbers trials atomically in the storage).
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import InputError

DEFAULT_JOURNAL = "optuna.journal"
SQLITE_TIMEOUT_S = 60


def default_storage_url(runs_dir) -> str:
    return f"journal:{(Path(runs_dir).resolve() / DEFAULT_JOURNAL)}"


def redact(url: str) -> str:
    """The URL without its password (for logs and MLflow tags)."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


class _file_lock:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        import fcntl

        self.f = open(self.path, "a")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        import fcntl

        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def _rdb(url: str, engine_kwargs: dict, attempts: int = 5):
    """RDBStorage, retried: two workers creating a fresh database's tables at once collide."""
    import time

    import optuna

    for attempt in range(attempts - 1):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except Exception:
            time.sleep(0.5 * (attempt + 1))
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


def open_storage(url: str | None, runs_dir="ratspain-runs"):
    """An Optuna storage object for `url` (default: the journal file under `runs_dir`)."""
    import optuna

    url = url or default_storage_url(runs_dir)
    try:
        if url.startswith("journal:") or (url.endswith((".journal", ".log")) and "://" not in url):
            from optuna.storages.journal import JournalFileBackend

            path = Path(url.removeprefix("journal:").removeprefix("//")).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            backend = JournalFileBackend(str(path))  # symlink lock: atomic on local disks and NFS
            return optuna.storages.JournalStorage(backend)
        if url.startswith("redis://") or url.startswith("rediss://"):
            from optuna.storages.journal import JournalRedisBackend

            return optuna.storages.JournalStorage(JournalRedisBackend(url))
        if url.startswith("sqlite:"):
            db = url.split("sqlite:///", 1)[-1]
            kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
            if db and db != url and db != ":memory:":
                Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
                with _file_lock(Path(db).expanduser().with_suffix(".init.lock")):  # workers creating the tables at once
                    return _rdb(url, kwargs)
            return _rdb(url, kwargs)
        if "://" in url:
            return _rdb(url, {"pool_pre_ping": True})
    except ImportError as e:
        raise InputError(f"--storage {redact(url)}: needs a package that is not installed ({e.name or e})") from None
    except Exception as e:  # a database that cannot be reached or opened
        raise InputError(f"--storage {redact(url)}: cannot open the Optuna storage ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    raise InputError(f"--storage {url!r}: expected an Optuna storage URL (sqlite:///x.db, postgresql://..., journal:PATH, redis://...)")
