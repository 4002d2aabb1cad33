"""The hosted leaderboard with real parts: a PostgreSQL cluster, `ratspain-bench serve` (uvicorn) on 127.0.0.1, two
`server worker` processes (procrastinate) running submissions under gVisor, and headless Chromium for the pages.

One service for the module (its start costs seconds); each test uses teams of its own.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
from hosted import (
    COUNTS,
    HARDCODE,
    ROOT,
    TEMPLATE,
    await_health,
    cli,
    hosted,
    variant,
    without_config,
)
from servers import free_port

import ratspain_bench as rb
from ratspain_bench import server
from ratspain_bench.evaluation import sandbox
from ratspain_bench.server import archive

unavailable = sandbox.unavailable("runsc")
pytestmark = pytest.mark.skipif(bool(unavailable), reason=f"the service's workers run under gVisor: {unavailable}")


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with hosted(tmp_path_factory.mktemp("service")) as s:
        yield s


# ---------------------------------------------------------------- the happy path


def test_upload_is_scored_as_run_scores_it(service, tmp_path, monkeypatch):
    token = service.team("happy")
    out = subprocess.run(cli("submit", "upload", str(TEMPLATE), "--server", service.url, "--token", token, "--wait", "--json"),
                         capture_output=True, text=True, env=service.env, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    view = json.loads(out.stdout.strip().splitlines()[-1])
    assert view["status"] == "scored" and set(view) >= {"id", "status", "released"} and "f1" not in view

    # `run` of the same folder on the same data, by hand
    import ratspain_bench.methods.registry as reg

    subs = tmp_path / "subs"
    shutil.copytree(TEMPLATE, subs / "mine")
    monkeypatch.setenv("RATSPAIN_SUBMISSIONS_DIR", str(subs))
    monkeypatch.setenv("RATSPAIN_CACHE_DIR", service.env["RATSPAIN_CACHE_DIR"])
    monkeypatch.setattr(reg, "_default", [])
    from ratspain_bench.server.ladder import round_to
    from ratspain_bench.server.partition import subset

    public = subset(rb.load_dataset(service.data), service.split["ids"], "public")
    ran = rb.run(["template-example"], data=public, runs_dir=tmp_path / "runs")
    pooled = ran.results[0].score["pooled"]
    assert view["released"] == round_to(pooled["f1"], 0.02)  # the first score a team gets: released, on the step's grid
    assert server.submissions(db=service.db)[-1]["f1"] == pytest.approx(pooled["f1"], abs=1e-12)  # the host's full figure

    code, board = service.call("GET", "/api/leaderboard")
    rows = [r for r in board["leaderboards"][0]["rows"] if r["method"] == "template-example"]
    assert code == 200 and len(rows) == 1 and rows[0]["rank"] is not None
    assert rows[0]["pooled"]["f1"] == view["released"] and rows[0]["confusion"] == {}
    assert rows[0]["per_subject"] == {} and rows[0]["train_seconds"] is None  # what a team must not read
    with urllib.request.urlopen(service.url + "/", timeout=30) as r:
        page = r.read().decode()
        policy = r.headers["Content-Security-Policy"]
    assert "template-example" in page and "team happy" in page and "default-src 'none'" in policy and "unsafe-inline" not in policy
    assert "Rat#r1" not in page


INPUTS = '''"""Reports, through its scores, what its worker was handed: how many training images and how many pain labels."""
from dataclasses import dataclass

import numpy as np

from ratspain_bench.methods import Method, Predictions


@dataclass(frozen=True)
class InputsConfig:
    image_size: int = 16


class Inputs(Method):
    Config = InputsConfig
    family = "inputs"

    def fit(self, train):
        self.n, self.pos = len(train.labels), int(np.sum(train.labels))

    def predict(self, test):
        scores = np.full(len(test.images), 0.5)
        scores[0], scores[1] = self.n / 10000, self.pos / 10000
        return Predictions(np.zeros(len(test.images), dtype=int), scores)
'''


def test_workers_are_handed_public_images_only(service, tmp_path):
    import pandas as pd

    folder = variant(tmp_path, "inputs", toml={"name": "public-inputs", "entry_point": "inputs:Inputs"})
    (folder / "inputs.py").write_text(INPUTS)
    without_config(folder)
    token = service.team("inputs")
    code, reply = service.upload(folder, token)
    assert code == 201, reply
    assert service.wait(reply["id"], token)["status"] == "scored", service.host(reply["id"])
    manifest = pd.read_csv(service.data / "manifest.csv", dtype=str)
    label = {r.path: int(r.label) for r in manifest.itertuples()}
    subject = dict(zip(manifest["path"], manifest["subject"]))
    public = set(service.split["ids"])
    folds = [f for f in sorted((service.runs / "jobs").glob("*-public-*/public-inputs/*/*/predictions.csv"))
             if f.parent.name != "summary"]
    assert len(folds) == 3
    for f in folds:
        t = pd.read_csv(f, dtype={"image": str, "subject": str})
        held_out = t["subject"].iloc[0]
        assert set(t["image"]) <= public and set(t["image"]) == {i for i in public if subject[i] == held_out}
        train = [i for i in public if subject[i] != held_out]
        told = sorted(round(s * 10000) for s in t["score"] if s != 0.5)  # (the harness shuffles the test order)
        assert told == sorted([len(train), sum(label[i] for i in train)])  # what its worker got: the public training images
        # and their labels, no more


# ---------------------------------------------------------------- refusals


def _tar(members: dict, special=None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in special or []:
            tar.addfile(info)
    return buf.getvalue()


def _zip(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _good() -> dict:
    return {p.name: p.read_bytes() for p in TEMPLATE.iterdir() if p.is_file()}


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _device(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    return info


BAD = {
    "traversal": (lambda: _tar({**_good(), "../escaped.py": b"x = 1\n"}), 422, "'..'"),
    "zip traversal": (lambda: _zip({**_good(), "../escaped.py": b"x = 1\n"}), 422, "'..'"),
    "absolute path": (lambda: _tar({**_good(), "/tmp/ratspain-escaped.py": b"x = 1\n"}), 422, "absolute"),
    "symlink": (lambda: _tar(_good(), [_link("data.py", "/etc/passwd")]), 422, "a link"),
    "hard link": (lambda: _tar(_good(), [_link("data.py", "method.py", tarfile.LNKTYPE)]), 422, "a link"),
    "device": (lambda: _tar(_good(), [_device("null")]), 422, "special file"),
    "zip bomb": (lambda: _zip({**_good(), "weights.bin": b"\0" * (60 << 20)}), 413, "compression bomb"),
    "too many members": (lambda: _tar({**_good(), **{f"m{i}.py": b"" for i in range(150)}}), 413, "members"),
    "too big": (lambda: _tar({**_good(), "noise.bin": os.urandom(3 << 20)}), 413, "limit of 2 MiB"),
    "not an archive": (lambda: b"just some text, not an archive\n", 422, "not a .tar.gz or .zip"),
    "no submission.toml": (lambda: _tar({"method.py": _good()["method.py"]}), 422, "no submission.toml"),
    "bad toml": (lambda: _tar({**_good(), "submission.toml": b"name = \n[[["}), 422, "TOML"),
    "predictions only": (lambda: _tar({**_good(), "submission.toml": b'kind = "predictions"\nname = "x-y"\n'}), 422, "kind"),
}


def test_bad_uploads_are_refused_with_one_line_and_nothing_queued(service):
    token = service.team("refused")
    uploads = service.runs / "server" / "uploads"
    before = len(server.submissions(db=service.db))
    for kind, (make, status, words) in BAD.items():
        code, reply = service.call("POST", "/api/submissions", token, make())
        assert code == status, (kind, code, reply)
        assert words in reply["detail"] and "\n" not in reply["detail"], (kind, reply)
        assert str(service.root) not in reply["detail"], (kind, reply)  # no server path in what a team reads
    assert len(server.submissions(db=service.db)) == before
    assert not list(uploads.iterdir()) if uploads.exists() else True  # every unpacked upload removed
    assert not (service.runs / "server" / "escaped.py").exists() and not Path("/tmp/ratspain-escaped.py").exists()
    assert not list(service.runs.rglob("escaped.py"))


def test_tokens(service, tmp_path):
    token = service.team("tokens")
    good = archive.pack(TEMPLATE)
    for wrong in ("", "rbt_1_" + "x" * 43, token[:-1] + ("A" if token[-1] != "A" else "B"), "Bearer"):
        code, reply = service.call("POST", "/api/submissions", wrong or None, good)
        assert code == 401 and "token" in reply["detail"] and "\n" not in reply["detail"]
    fast = "raise ImportError('fails fast')\n"
    owned = variant(tmp_path, "owned", toml={"name": "owned-name"}, head=fast)
    assert service.upload(owned, service.team("owner"))[0] == 201
    code, reply = service.upload(owned, token)  # a name another team's rows hold
    assert code == 409 and "taken by another team" in reply["detail"]
    raw = archive.pack(variant(tmp_path, "raw", toml={"name": "raw-body"}, head=fast))
    code, reply = service.call("POST", "/api/submissions", token, raw)
    assert code == 201, reply  # a bare archive body is taken too
    server.revoke_team("tokens", db=service.db)
    code, reply = service.call("POST", "/api/submissions", token, good)
    assert code == 401
    code, _ = service.call("GET", "/api/submissions", token)
    assert code == 401
    out = subprocess.run(cli("submit", "upload", str(TEMPLATE), "--server", service.url, "--token", token),
                         capture_output=True, text=True, env=service.env, timeout=60)
    assert out.returncode == 2 and "401" in out.stderr and len(out.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- what a team can read


LEAKS = {
    "stdout": ("        print('LABELS', list(train.labels), flush=True)\n        raise ValueError('no')\n", ""),
    "message": ("        raise RuntimeError('labels: ' + ''.join(map(str, train.labels)))\n", ""),
    "own exception": ("        raise LabelLeak(''.join(map(str, train.labels)))\n",
                      "class LabelLeak(Exception):\n    pass\n\n\n"),
    "sleeps by fold": ("        import time\n        time.sleep(4 if '" + "r1" + "' in set(map(str, train.subjects)) else 0)\n"
                       "        raise ValueError('after a chosen sleep')\n", ""),
    "writes files": ("        import pathlib\n        pathlib.Path('/tmp/leak.txt').write_text(str(list(train.labels)))\n"
                     "        (pathlib.Path(self.context.work_dir) / 'leak.txt').write_text(str(list(train.labels)))\n"
                     "        raise OSError('see leak.txt')\n", ""),
}


def test_a_team_reads_only_the_fixed_reason(service, tmp_path):
    token = service.team("leaky")
    ids = {}
    for kind, (prefix, head) in LEAKS.items():
        folder = variant(tmp_path, kind.replace(" ", "-"), prefix, {"name": "leaky-method"}, head)
        code, reply = service.upload(folder, token)
        assert code == 201, reply
        ids[kind] = reply["id"]
    views = {kind: service.wait(sid, token) for kind, sid in ids.items()}
    strip = {"id", "created"}
    shown = {kind: json.dumps({k: v for k, v in view.items() if k not in strip}, sort_keys=True) for kind, view in views.items()}
    assert len(set(shown.values())) == 1, shown
    first = views["stdout"]
    assert first["status"] == "failed" and first["reason"] == "crashed in fit" and not first["refunded"]
    code, listing = service.call("GET", "/api/submissions", token)
    text = json.dumps(listing)
    for secret in ("LABELS", "labels:", "LabelLeak", "leak.txt", "after a chosen sleep", "ValueError", "fold", "r1"):
        assert secret not in text, secret
    # the host sees what happened
    assert "LabelLeak" in service.host(ids["own exception"])["log"]


def test_injected_markup_is_text_in_chromium(service, tmp_path):
    if not shutil.which("chromium"):
        pytest.skip("Debian's chromium package is not installed")
    sys.path.insert(0, str(ROOT / "tests" / "browser"))
    from check_page import page_facts

    evil = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"><b>bold</b>'
    folder = variant(tmp_path, "evil", toml={"name": "markup-method", "description": "desc " + evil, "authors": ["A " + evil, "B"]})
    token = service.team("markup")
    code, reply = service.upload(folder, token)
    assert code == 201, reply
    service.wait(reply["id"], token)
    facts = page_facts(f"{service.url}/submissions/{reply['id']}",
                       "JSON.stringify({pwned: window.__pwned || 0, text: document.body.innerText, "
                       "bold: document.getElementsByTagName('b').length, imgs: document.images.length})",
                       headers={"Authorization": f"Bearer {token}"})
    value = facts["value"]
    assert value["pwned"] == 0 and value["bold"] == 0 and value["imgs"] == 0
    assert "<script>window.__pwned=1</script>" in value["text"]
    board = page_facts(service.url + "/", "JSON.stringify({pwned: window.__pwned || 0, rows: "
                                          "document.getElementById('results-table').tBodies[0].rows.length})")
    assert board["value"]["pwned"] == 0 and board["value"]["rows"] >= 1 and board["console_errors"] == []


# ---------------------------------------------------------------- quotas


def test_quota_and_refund(service, tmp_path):
    token = service.team("quota")
    service.idle()
    manifest = service.data / "manifest.csv"
    original = manifest.read_bytes()
    manifest.write_text("not,a,manifest\n")  # the harness cannot read its data: a fault that is not the team's
    try:
        code, reply = service.upload(variant(tmp_path, "fine", toml={"name": "quota-method"}), token)
        assert code == 201
        view = service.wait(reply["id"], token)
    finally:
        manifest.write_bytes(original)
    assert view["status"] == "failed" and view["reason"] == "the harness failed" and view["refunded"]
    broken = variant(tmp_path, "broken", toml={"name": "quota-method"}, head="raise ImportError('broken on purpose')\n")  # fails fast
    left = []
    for _ in range(5):
        code, reply = service.upload(broken, token)
        assert code == 201, reply
        left.append(reply["quota"]["today_left"])
    assert left == [4, 3, 2, 1, 0]  # the refunded one does not count
    code, reply = service.upload(broken, token)
    assert code == 429 and "resets at" in reply["detail"] and reply["quota"]["resets_at"].endswith("T00:00:00Z")
    assert len([s for s in server.submissions(db=service.db) if s["team"] == "quota"]) == 6
    assert service.wait(reply_id := max(s["id"] for s in server.submissions(db=service.db)), token)["reason"] == \
        "crashed while loading the method", service.host(reply_id)


# ---------------------------------------------------------------- a worker killed mid-submission


def test_a_killed_worker_is_taken_over_without_running_a_fold_twice(service, tmp_path):
    token = service.team("killed")
    service.idle()
    folder = variant(tmp_path, "slow", "        import time\n        time.sleep(3)\n", {"name": "slow-method"})
    code, reply = service.upload(folder, token)
    assert code == 201
    sid = reply["id"]
    jobs = service.runs / "jobs"
    deadline = time.time() + 120
    while not list(jobs.glob("*/slow-method/*/*/DONE")):  # the first fold done (the second one running)
        assert time.time() < deadline, service.host(sid)
        time.sleep(0.2)
    host = service.host(sid)
    pid = int(host["log"].split("(pid ")[1].split(")")[0])
    os.kill(pid, signal.SIGKILL)
    finished = {p: p.stat().st_mtime_ns for p in jobs.glob("*/slow-method/*/*/DONE")}
    assert 1 <= len(finished) < 3
    try:
        view = service.wait(sid, token)
        host = service.host(sid)
        assert view["status"] == "scored", host
        assert host["attempts"] == 2 and host["log"].count("attempt ") == 2
        for p, mtime in finished.items():
            assert p.stat().st_mtime_ns == mtime, f"{p} was written again"
    finally:
        service.workers.append(service.start_worker())


# ---------------------------------------------------------------- the final run (last: it closes the phase)


def test_finalize_runs_each_pick_once_on_the_private_images(service, tmp_path, monkeypatch):
    import hashlib

    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score

    import ratspain_bench.methods.registry as reg
    from ratspain_bench.data.cache import load_images

    monkeypatch.setenv("RATSPAIN_CACHE_DIR", service.env["RATSPAIN_CACHE_DIR"])
    ds = rb.load_dataset(service.data)
    public = set(service.split["ids"])
    private = [i for i in ds.table["image"] if i not in public]
    images = load_images(ds, 32)[0]
    answers = {hashlib.sha1(np.ascontiguousarray(images[i]).tobytes()).hexdigest(): int(label)
               for i, (image, label) in enumerate(zip(ds.table["image"], ds.table["label"])) if image in public}
    cheat = variant(tmp_path, "cheat", toml={"name": "hardcode-method", "entry_point": "hard:HardCoded"})
    (cheat / "hard.py").write_text(HARDCODE)
    without_config(cheat)
    (cheat / "answers.json").write_text(json.dumps(answers))
    token = service.team("hardcode")
    code, reply = service.upload(cheat, token)
    assert code == 201, reply
    assert service.wait(reply["id"], token)["released"] == 1.0  # every public answer right: the top of the public board

    mine = service.team("finalist")
    first, second = (variant(tmp_path, f"v{t}", toml={"name": "finalist-method", "temperature": t}) for t in (0.1, 0.5))
    ids = []
    for folder in (first, second):
        code, reply = service.upload(folder, mine)
        assert code == 201, reply
        ids.append(reply["id"])
        assert service.wait(reply["id"], mine)["status"] == "scored"
    picked = subprocess.run(cli("submit", "select", str(ids[0]), "--server", service.url, "--token", mine), capture_output=True,
                            text=True, env=service.env, timeout=60)
    assert picked.returncode == 0, picked.stderr

    for other in ("happy", "inputs", "markup", "killed"):  # teams that leave: revoked, their picks are not run
        server.revoke_team(other, db=service.db)
    out = subprocess.run(cli("server", "finalize", "--data", str(service.data), "--db", service.db, "--runs-dir", str(service.runs)),
                         capture_output=True, text=True, env=service.env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    code, board = service.call("GET", "/api/final")
    assert code == 200
    rows = {r["method"]: r for r in board["leaderboards"][0]["rows"] if r["kind"] != "baseline"}
    truth = ds.table.set_index("image")["label"]

    # the hard-coded answers are worth nothing on the private images: it predicts no pain there
    assert rows["hardcode-method"]["pooled"]["f1"] == 0.0
    assert rows["hardcode-method"]["pooled"]["accuracy"] == pytest.approx(float((truth[private] == 0).mean()), abs=1e-6)

    # the pick: the selected (first) submission, trained on every image of the other rats, scored on the private images,
    # as an independent computation from `run` on every image and scikit-learn
    subs = tmp_path / "subs"
    shutil.copytree(first, subs / "first")
    monkeypatch.setenv("RATSPAIN_SUBMISSIONS_DIR", str(subs))
    monkeypatch.setattr(reg, "_default", [])
    preds = rb.run(["finalist-method"], data=ds, runs_dir=tmp_path / "runs").predictions.set_index("image").loc[private]
    row = rows["finalist-method"]
    assert row["pooled"]["f1"] == pytest.approx(f1_score(truth[private], preds["y_pred"]), abs=1e-6)
    assert row["pooled"]["accuracy"] == pytest.approx(accuracy_score(truth[private], preds["y_pred"]), abs=1e-6)
    assert len(row["per_subject"]) == 3 and "public phase: released" in row["note"]
    assert f"finalist: submission {ids[0]} " in out.stdout

    # the phase is over
    late = subprocess.run(cli("submit", "upload", str(first), "--server", service.url, "--token", mine), capture_output=True,
                          text=True, env=service.env, timeout=60)
    assert late.returncode == 2 and "phase is over" in late.stderr
    with urllib.request.urlopen(service.url + "/final", timeout=30) as r:
        assert "finalist-method" in r.read().decode() and "default-src 'none'" in r.headers["Content-Security-Policy"]


# ---------------------------------------------------------------- serve alone: its own database, its refusals


def test_serve_with_its_private_database(service):
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="ratspain-serve-", dir="/tmp"))
    os.chmod(root, 0o755)  # the postgres user runs the cluster and must reach it
    port = free_port()
    runs = root / "runs"
    proc = subprocess.Popen(cli("serve", "--data", str(service.data), "--runs-dir", str(runs), "--port", str(port), "--workers", "0"),
                            env=service.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        await_health(f"http://127.0.0.1:{port}", proc)
        out = subprocess.run(cli("server", "team", "add", "solo", "--runs-dir", str(runs)), capture_output=True, text=True,
                             env=service.env, timeout=60)
        assert out.returncode == 0, out.stderr
        import re

        token = out.stdout.strip().splitlines()[-1]
        assert re.fullmatch(r"[A-Za-z0-9_-]{32,}", token)
        listed = subprocess.run(cli("server", "team", "list", "--runs-dir", str(runs), "--format", "json"), capture_output=True,
                                text=True, env=service.env, timeout=60)
        assert [t["name"] for t in json.loads(listed.stdout)] == ["solo"]
        assert (runs / "postgres" / "cluster.json").is_file()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        rc = proc.wait(timeout=90)
    assert rc == 0
    assert not (runs / "postgres" / "cluster.json").exists()  # the cluster stopped with it
    out = subprocess.run(cli("server", "team", "list", "--runs-dir", str(runs)), capture_output=True, text=True, env=service.env)
    assert out.returncode == 2 and "no running server's database" in out.stderr
    shutil.rmtree(root, ignore_errors=True)


def test_serve_refuses_public_labels_and_says_what_to_install(tmp_path, monkeypatch):
    public = rb.synth(tmp_path / "public", size=32, counts=COUNTS, jobs=1).parent
    out = subprocess.run(cli("serve", "--data", str(public), "--runs-dir", str(tmp_path / "runs")), capture_output=True, text=True,
                         timeout=120, env={**os.environ, "RATSPAIN_CACHE_DIR": str(tmp_path / "cache")})
    assert out.returncode == 2 and "labels are public" in out.stderr and "--allow-public-labels" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs" / "postgres").exists()
    from ratspain_bench.errors import InputError
    from ratspain_bench.server import postgres

    monkeypatch.setattr(postgres, "server_binaries", lambda: None)
    with pytest.raises(InputError, match="apt-get install postgresql"):
        postgres.Cluster(tmp_path / "pg").start()


@pytest.mark.slow
def test_the_readme_lines(tmp_path):
    """The README's three commands as written (the port aside): a scored row from a second terminal."""
    import re
    import tempfile

    section = (ROOT / "README.md").read_text().split("## A hosted leaderboard")[1].split("## ")[0]
    synth_serve, team, upload = [ln.split("   #")[0] for ln in re.search(r"```bash\n(.*?)```", section, re.S).group(1).splitlines()]
    root = Path(tempfile.mkdtemp(prefix="ratspain-readme-", dir="/tmp"))
    os.chmod(root, 0o755)
    port = free_port()
    env = {**os.environ, "RATSPAIN_SECRETS_DIR": str(root / "secrets"), "RATSPAIN_CACHE_DIR": str(root / "cache")}
    shutil.copytree(ROOT / "submissions", root / "submissions")
    proc = subprocess.Popen(["bash", "-c", f"exec {synth_serve.replace('&& ratspain-bench', '&& exec ratspain-bench')} --port {port}"],
                            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        await_health(f"http://127.0.0.1:{port}", proc, timeout=900)
        token = subprocess.run(["bash", "-c", team], cwd=root, env=env, capture_output=True, text=True, check=True).stdout.split()[-1]
        cmd = upload.replace("TOKEN", token).replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        out = subprocess.run(["bash", "-c", cmd], cwd=root, env=env, capture_output=True, text=True, timeout=900)
        assert out.returncode == 0 and "scored" in out.stdout, out.stdout + out.stderr
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=90)
        shutil.rmtree(root, ignore_errors=True)
