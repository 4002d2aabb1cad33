"""Real servers for the tests: a throw-away PostgreSQL cluster and an MLflow tracking server, each on a free
loopback port in a temporary folder, stopped afterwards. A test that needs one skips with a one-line reason
where the binaries are missing."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ratspain_bench.errors import InputError
from ratspain_bench.server.postgres import _as_postgres as as_postgres
from ratspain_bench.server.postgres import free_port, server_binaries  # noqa: F401  (free_port: the tests' import)


def _pg_bin() -> Path | None:
    return server_binaries()


def _as_postgres(cmd: list[str]) -> list[str]:
    """The package's rule (as root, PostgreSQL's binaries run as `postgres`); a skip where it cannot."""
    try:
        return as_postgres(cmd)
    except InputError as e:
        pytest.skip(str(e))


def start_postgres():
    """initdb + pg_ctl start on 127.0.0.1:PORT in a fresh folder of /tmp (one the postgres user can reach);
    returns (url, stop); `stop` also removes the folder."""
    import tempfile

    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (Debian package `postgresql`)")
    try:
        import psycopg  # noqa: F401  (SQLAlchemy 2.1's default driver for postgresql:// URLs)
    except ImportError:
        pytest.skip("psycopg not installed (pip install 'psycopg[binary]')")
    root = Path(tempfile.mkdtemp(prefix="ratspain-pg-"))
    os.chmod(root, 0o755)
    data = root / "pgdata"
    data.mkdir()
    if os.geteuid() == 0:
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(data, pw.pw_uid, pw.pw_gid)
    port = free_port()
    out = subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]),
                         capture_output=True, text=True, timeout=120)
    if out.returncode:
        pytest.skip(f"initdb failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
    start = _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w", "-t", "60",
                          "-o", f"-p {port} -h 127.0.0.1 -k {data} -c fsync=off", "start"])
    out = subprocess.run(start, capture_output=True, text=True, timeout=90)
    if out.returncode:
        raise RuntimeError(f"pg_ctl start failed: {out.stdout}{out.stderr}")

    def stop() -> None:
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)

    return f"postgresql://postgres@127.0.0.1:{port}/postgres", stop


def start_mlflow_server(root: Path, backend: str | None = None):
    """`mlflow server` on 127.0.0.1:PORT (SQLite backend in `root` unless given), artifacts in `root`; returns (url, stop)."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    backend = backend or f"sqlite:///{root / 'server.db'}"
    log = open(root / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
                             "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def stop() -> None:
        import signal

        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()

    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            stop()
            raise RuntimeError(f"mlflow server exited: {(root / 'server.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return url, stop
        except OSError:
            time.sleep(0.5)
    stop()
    raise RuntimeError(f"mlflow server did not answer within 120 s: {(root / 'server.log').read_text()[-2000:]}")
