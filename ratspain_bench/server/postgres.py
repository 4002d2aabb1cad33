"""A private PostgreSQL cluster in a folder: what `serve` starts when it is given no `--db`, and what the tests start.

It uses the machine's server binaries (Debian puts them under /usr/lib/postgresql/<version>/bin, off the PATH). The
cluster listens on 127.0.0.1 only, with `trust` authentication for the local user `postgres`, so it must stay
private to the machine. `Cluster.running(folder)` finds the cluster of a `serve` that runs there (`server team add
--runs-dir DIR`).
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

INSTALL = "install PostgreSQL's server (Debian/Ubuntu: apt-get install postgresql) or pass --db postgresql://..."


def server_binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parts[4]) if Path(p).parts[4].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl and shutil.which("initdb") else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, its binaries run as the `postgres` user."""
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser is None:
        raise InputError("running as root without runuser: cannot start PostgreSQL as the postgres user")
    return [runuser, "-u", "postgres", "--", *cmd]


@dataclass
class Cluster:
    folder: Path  # holds pgdata/ and cluster.json (the port of a running cluster)
    port: int = 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def data(self) -> Path:
        return self.folder / "pgdata"

    def start(self) -> "Cluster":
        """initdb (the first time) and start on a free loopback port; InputError naming what to install."""
        bindir = server_binaries()
        if bindir is None:
            raise InputError(f"no PostgreSQL server binaries found (initdb, pg_ctl): {INSTALL}")
        self.folder.mkdir(parents=True, exist_ok=True)
        if not (self.data / "PG_VERSION").exists():
            self.data.mkdir(parents=True, exist_ok=True)
            os.chmod(self.data, 0o700)
            if os.geteuid() == 0:
                import pwd

                pw = pwd.getpwnam("postgres")
                for p in (self.folder, self.data):
                    os.chown(p, pw.pw_uid, pw.pw_gid)
            out = subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"]),
                                 capture_output=True, text=True, timeout=180)
            if out.returncode:
                raise InputError(f"{self.data}: initdb failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
        status = subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(self.data), "status"]), capture_output=True)
        if status.returncode == 0:  # left running by a server that was killed: stopped, then started afresh
            self.stop()
        self.port = free_port()
        out = subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.data / "server.log"),
                                           "-w", "-t", "90", "-o", f"-p {self.port} -h 127.0.0.1 -k {self.data}", "start"]),
                             capture_output=True, text=True, timeout=120)
        if out.returncode:
            raise InputError(f"{self.data}: PostgreSQL did not start: {(out.stdout + out.stderr).strip().splitlines()[-1:]}")
        (self.folder / "cluster.json").write_text(json.dumps({"port": self.port, "pid": os.getpid()}))
        return self

    def stop(self, fast: bool = True) -> None:
        bindir = server_binaries()
        if bindir is not None and self.data.exists():
            subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast" if fast else "immediate",
                                         "stop"]), capture_output=True, timeout=120)
        (self.folder / "cluster.json").unlink(missing_ok=True)

    @classmethod
    def running(cls, folder) -> "Cluster":
        """The cluster a `serve` keeps running in `folder`; InputError when there is none."""
        folder = Path(folder)
        try:
            port = json.loads((folder / "cluster.json").read_text())["port"]
        except (OSError, ValueError, KeyError):
            raise InputError(f"{folder}: no running server's database here (start `ratspain-bench serve --runs-dir "
                             f"{folder.parent}`, or pass --db URL)") from None
        return cls(folder, int(port))
