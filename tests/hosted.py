"""The hosted leaderboard for the tests: a PostgreSQL cluster, `ratspain-bench serve` (uvicorn) on 127.0.0.1 and two
`server worker` processes (procrastinate) running submissions under gVisor, on a tiny hidden replica (3 rats x 10
images) split into public and private halves; helpers to call it as a team and to make submissions from the template."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from servers import free_port, start_postgres

import ratspain_bench as rb
from ratspain_bench import server
from ratspain_bench.server import archive

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "submissions" / "_template"
COUNTS = {"r1": {"no_pain": 5, "moderate": 5}, "r2": {"no_pain": 4, "moderate": 6}, "r3": {"no_pain": 6, "moderate": 4}}
CONFIG = ("quota_per_day = 5\nquota_total = 50\nheartbeat = 1\nreveal_step = 1\ntime_limit = 120\nmemory_mb = 2048\nupload_mb = 2\n"
          "members = 100\n")
FIT = "    def fit(self, train: TrainSet) -> None:\n"
def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ratspain_bench", *args]


def await_health(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until `url` answers /api/health; fails when `proc` (its server) exits first or time runs out."""
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/api/health", timeout=2):
                return
        except OSError:
            assert proc.poll() is None, f"the server exited with {proc.returncode}"
            assert time.time() < deadline, f"{url} did not answer within {timeout} s"
            time.sleep(0.3)


class Service:
    def __init__(self, root: Path, config: str = CONFIG, counts: dict = COUNTS):
        self.root = root
        self.db, self._stop_db = start_postgres()
        self.env = {**os.environ, "RATSPAIN_CACHE_DIR": str(root / "cache"), "RATSPAIN_SECRETS_DIR": str(root / "secrets"),
                    "PYTHONUNBUFFERED": "1"}
        os.environ["RATSPAIN_SECRETS_DIR"] = self.env["RATSPAIN_SECRETS_DIR"]
        self.data = rb.synth(root / "held", size=32, counts=counts, hidden=True, jobs=1).parent
        (root / "server.toml").write_text(config)
        self.runs = root / "runs"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []
        self.serve = self._start(["serve", "--data", str(self.data), "--db", self.db, "--runs-dir", str(self.runs), "--port",
                                  str(self.port), "--workers", "0", "--config", str(root / "server.toml")], "serve.log")
        self.workers = [self.start_worker() for _ in range(2)]
        await_health(self.url, self.serve)
        self.split = server.split(self.data, 0.5, db=self.db)  # the public phase: runs see the public images only

    def _start(self, args, log: str) -> subprocess.Popen:
        p = subprocess.Popen(cli(*args), env=self.env, stdout=open(self.root / log, "ab"), stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def front(self, config: str) -> str:
        """A second `serve` on the same database and data with other settings (`config`); returns its URL. A submission
        keeps the settings of the front end that took it (its Ladder among them)."""
        n = len(self.procs)
        (self.root / f"server{n}.toml").write_text(config)
        port = free_port()
        proc = self._start(["serve", "--data", str(self.data), "--db", self.db, "--runs-dir", str(self.runs), "--port", str(port),
                            "--workers", "0", "--config", str(self.root / f"server{n}.toml")], f"serve{n}.log")
        url = f"http://127.0.0.1:{port}"
        await_health(url, proc)
        return url

    def start_worker(self) -> subprocess.Popen:
        return self._start(["server", "worker", "--db", self.db, "--data", str(self.data), "--runs-dir", str(self.runs),
                            "--heartbeat", "1"], f"worker{len(self.procs)}.log")

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        self._stop_db()

    def team(self, name: str) -> str:
        return server.add_team(name, "t@example.org", db=self.db)

    def call(self, method: str, path: str, token: str | None = None, body: bytes | None = None,
             content_type: str | None = None, url: str | None = None) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if content_type:
            headers["Content-Type"] = content_type
        req = urllib.request.Request((url or self.url) + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def upload(self, folder: Path, token: str, url: str | None = None) -> tuple[int, dict]:
        """As the contract says: multipart/form-data, the archive in the field `archive`."""
        from ratspain_bench.server.client import _form

        return self.call("POST", "/api/submissions", token, *_form(archive.pack(folder)), url=url)

    def wait(self, sid: int, token: str, timeout: float = 240) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            code, view = self.call("GET", f"/api/submissions/{sid}", token)
            assert code == 200, view
            if view["status"] in ("scored", "failed"):
                return view
            time.sleep(0.5)
        raise AssertionError(f"submission {sid} did not end within {timeout} s: {self.host(sid)}")

    def host(self, sid: int) -> dict:
        return next(s for s in server.submissions(db=self.db, logs=True) if s["id"] == sid)

    def idle(self, timeout: float = 240) -> None:
        deadline = time.time() + timeout
        while any(s["status"] in ("queued", "running") for s in server.submissions(db=self.db)):
            assert time.time() < deadline, "the queue did not empty"
            time.sleep(0.5)


def variant(tmp: Path, name: str, fit_prefix: str = "", toml: dict | None = None, head: str = "") -> Path:
    """The template, its fit() starting with `fit_prefix`, keys of submission.toml replaced, `head` code at the top."""
    dst = tmp / name
    shutil.copytree(TEMPLATE, dst)
    code = (dst / "method.py").read_text()
    assert FIT in code
    code = code.replace(FIT, FIT + fit_prefix)
    (dst / "method.py").write_text(code.replace("from __future__ import annotations\n", "from __future__ import annotations\n" + head))
    text = (dst / "submission.toml").read_text()
    for key, value in (toml or {}).items():  # the first line that sets `key` (not [search_space]'s)
        lines = text.splitlines()
        at = next(i for i, ln in enumerate(lines) if ln.split("=")[0].strip() == key)
        lines[at] = f"{key} = {json.dumps(value)}"
        text = "\n".join(lines) + "\n"
    (dst / "submission.toml").write_text(text)
    return dst


def without_config(folder: Path) -> None:
    """The template's submission.toml without its [config] and [search_space] (for a method of other parameters)."""
    lines = (folder / "submission.toml").read_text().splitlines()
    keep = [ln for ln in lines if not ln.startswith(("image_size", "temperature", "[search_space]", "[config]"))]
    (folder / "submission.toml").write_text("\n".join(keep) + "\n")


@contextlib.contextmanager
def hosted(root: Path, config: str = CONFIG, counts: dict = COUNTS):
    """A Service in `root` for the duration of the block (its secrets folder set in this process too: `server split`
    and `finalize` called from the tests read the seed there)."""
    before = os.environ.get("RATSPAIN_SECRETS_DIR")
    s = Service(root, config, counts)
    try:
        yield s
    finally:
        s.stop()
        if before is None:
            os.environ.pop("RATSPAIN_SECRETS_DIR", None)
        else:
            os.environ["RATSPAIN_SECRETS_DIR"] = before


HARDCODE = '''"""Predicts the labels it was given for the public images (as if mined during the public phase), keyed by pixels."""
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ratspain_bench.methods import Method, Predictions


@dataclass(frozen=True)
class HardConfig:
    image_size: int = 32


class HardCoded(Method):
    Config = HardConfig
    family = "hard-coded"

    def fit(self, train):
        self.known = json.loads((Path(__file__).parent / "answers.json").read_text())

    def predict(self, test):
        labels = np.array([self.known.get(hashlib.sha1(np.ascontiguousarray(im).tobytes()).hexdigest(), 0) for im in test.images])
        return Predictions(labels, labels.astype(float))
'''
