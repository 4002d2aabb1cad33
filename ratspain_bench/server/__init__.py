"""A leaderboard the data holder hosts: teams upload code, workers run it sandboxed on the holder's data, one fresh
sandbox per fold, and the board shows the scores.

    archive   safe unpacking of uploads (.tar.gz, .zip) and packing for `submit upload`
    store     PostgreSQL tables: teams and tokens, submissions, quotas
    queue     procrastinate jobs and workers (heartbeats, stalled-job recovery, refunds)
    scoring   one submission through `run`'s fold path, in a child process of a worker
    app       the HTTP service (FastAPI); pages and board: its HTML and the public board
    client    `submit upload`: pack, upload, wait
    ladder    what score a team reads (Blum and Hardt's Ladder)
    partition the secret public/private split of the images
    postgres  a private PostgreSQL cluster for `serve` without --db

Everything the CLI's `serve`, `server ...` and `submit upload` do is a function here.
"""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from ..errors import InputError
from . import config as _config
from . import store
from .postgres import Cluster


def require_extra() -> None:
    """The hosted board's libraries, or one line naming what to install."""
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn", "procrastinate", "psycopg", "psycopg_pool") if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(f"the hosted leaderboard needs {', '.join(missing)}: pip install 'ratspain_bench[server]'")


def database(db: str | None = None, runs_dir="ratspain-runs") -> str:
    """The database URL: `db`, else that of the private cluster a `serve` keeps running in `runs_dir`."""
    return db or Cluster.running(Path(runs_dir) / "postgres").url


def add_team(name: str, contact: str = "", *, db=None, runs_dir="ratspain-runs") -> str:
    """A new team; returns its token (shown once, never stored)."""
    url = database(db, runs_dir)
    store.init(url)
    with store.connect(url) as conn:
        return store.add_team(conn, name, contact)


def list_teams(*, db=None, runs_dir="ratspain-runs") -> list[dict]:
    url = database(db, runs_dir)
    store.init(url)
    with store.connect(url) as conn:
        return store.list_teams(conn)


def revoke_team(name: str, *, db=None, runs_dir="ratspain-runs") -> None:
    url = database(db, runs_dir)
    store.init(url)
    with store.connect(url) as conn:
        store.revoke_team(conn, name)


def submissions(*, db=None, runs_dir="ratspain-runs", logs: bool = False) -> list[dict]:
    """Every submission as the host sees it (with the harness's logs when `logs`)."""
    url = database(db, runs_dir)
    store.init(url)
    with store.connect(url) as conn:
        return store.all_submissions(conn, with_logs=logs)


def split(data, public: float = 0.5, *, db=None, runs_dir="ratspain-runs") -> dict:
    """Draw the secret public/private split of `data` (`split.make`) and keep its public images' ids in the database;
    refused once submissions exist. Returns counts, the seed's file and the near-duplicate pairs across the halves."""
    import json

    from ..data import load_dataset
    from . import partition

    dataset = load_dataset(data)
    url = database(db, runs_dir)
    store.init(url)
    with store.connect(url) as conn:
        known = store.get_meta(conn, "fingerprint")
        if known and known != dataset.fingerprint:
            raise InputError(f"{data}: not the server's dataset (fingerprint {dataset.fingerprint}, the server's {known})")
        if conn.execute("SELECT count(*) FROM rb_submission").fetchone()[0]:
            raise InputError("submissions exist: the split is fixed before the first one (a new split needs a new database)")
        made = partition.make(dataset, public)
        store.set_meta(conn, "split", json.dumps({"public": public, "ids": made["ids"]}))
    made["near_duplicates"] = partition.near_duplicates(dataset, made["ids"])
    return made


def finalize(data, *, db=None, runs_dir="ratspain-runs", sandbox: str = "auto", device: str = "cpu", progress=print) -> dict:
    """Close the public phase (no upload is taken after it) and run each team's pick once on the private images; the
    final board as JSON (also served at /final and /api/final). See `final`."""
    require_extra()
    from .final import finalize as _finalize

    url = database(db, runs_dir)
    store.init(url)
    return _finalize(url, data, Path(runs_dir).resolve(), sandbox, device, progress)


def worker(db: str | None, data, *, runs_dir="ratspain-runs", device: str = "cpu", sandbox: str = "auto",
           heartbeat: float = 10.0) -> None:
    """A worker on this machine until SIGTERM/SIGINT (see `queue`)."""
    require_extra()
    from .queue import WorkerSettings, run_worker

    run_worker(WorkerSettings(db=database(db, runs_dir), data=str(data), runs_dir=Path(runs_dir).resolve(), device=device,
                              sandbox=sandbox, heartbeat=heartbeat))


def serve(data, *, db: str | None = None, runs_dir="ratspain-runs", host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          config=None, allow_public_labels: bool = False, sandbox: str = "auto") -> None:
    """The service until SIGTERM/SIGINT: the database (a private cluster in RUNS_DIR/postgres without `db`), `workers`
    local workers, and the HTTP app on host:port."""
    require_extra()
    import uvicorn

    from ..data import load_dataset
    from .app import ServiceSettings, create_app
    from .queue import die_with_parent

    cfg = _config.read(config)
    dataset = load_dataset(data)
    if dataset.labels_public and not allow_public_labels:
        raise InputError(f"{data}: its labels are public (anyone can render this replica again), so scores on it rank nothing; "
                         "serve your own data or `ratspain-bench synth OUT --hidden` data, or pass --allow-public-labels to try "
                         "the service")
    if workers < 0:
        raise InputError(f"--workers {workers}: expected 0 or more")
    runs_dir = Path(runs_dir).resolve()
    runs_dir.mkdir(parents=True, exist_ok=True)
    cluster = None if db else Cluster(runs_dir / "postgres").start()
    url = db or cluster.url
    children = []
    try:
        store.init(url)
        with store.connect(url) as conn:
            known = store.get_meta(conn, "fingerprint")
            if known and known != dataset.fingerprint:
                raise InputError(f"{data}: this database scores another dataset (fingerprint {known}); pass a new --db or --runs-dir")
            store.set_meta(conn, "fingerprint", dataset.fingerprint)
        for _ in range(workers):
            children.append(subprocess.Popen([sys.executable, "-m", "ratspain_bench", "server", "worker", "--db", url, "--data",
                                              str(data), "--runs-dir", str(runs_dir), "--sandbox", sandbox,
                                              "--heartbeat", str(cfg["heartbeat"])], preexec_fn=die_with_parent(signal.SIGTERM)))
        settings = ServiceSettings(db=url, dataset_name=dataset.name, runs_dir=runs_dir, quota=_config.quota(cfg),
                                   limits=_config.limits(cfg), time_limit=cfg["time_limit"], memory_mb=cfg["memory_mb"],
                                   ladder=cfg["ladder"], eta=cfg["eta"], reveal_step=cfg["reveal_step"])
        # uvicorn sends itself the signal that stopped it once it is done: a handler here lets the cleanup below run
        signal.signal(signal.SIGTERM, lambda *_: None)
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host=host, port=port, log_level="warning", access_log=False))
        print(f"serving {dataset.name} ({len(dataset)} images) on http://{host}:{port} with {workers} worker(s); "
              f"database {'in ' + str(cluster.folder) if cluster else store._safe(url)}", flush=True)
        server.run()
    finally:
        for c in children:
            c.send_signal(signal.SIGTERM)
        for c in children:
            try:
                c.wait(timeout=30)
            except subprocess.TimeoutExpired:
                c.kill()
        if cluster is not None:
            cluster.stop()
