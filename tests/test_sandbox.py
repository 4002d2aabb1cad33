"""Adversarial submissions against the sandbox: each cheat is shown to work where it is not closed (in the
harness's process, or unsandboxed), then to score at chance or fail with a named reason when sandboxed.

A cheat that finds no labels falls back to predicting "no pain" everywhere: pooled F1 0.
"""
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from cheats import blocked, f1

import ratspain_bench as rb
from ratspain_bench.evaluation import cgroup, sandbox

pytestmark = pytest.mark.skipif(sandbox.unavailable() is not None, reason=f"no sandbox here: {sandbox.unavailable()}")


def test_reading_labels_from_the_filesystem(lab):
    tmp, data, cheat, run = lab
    cheat(predict=f"known = labels_from_disk({str(data / 'manifest.csv')!r})\n")
    assert f1(run(["cheat"], "no-sandbox")) == 1.0  # unsandboxed, the files are there
    assert blocked(run(["cheat"]), "FileNotFoundError")  # sandboxed: no dataset, no manifest, no images


def test_reading_labels_from_the_interpreter(lab):
    """The issue's cheat: walk the stack to the harness's `dataset` and read the held-out rat's labels."""
    tmp, data, cheat, run = lab
    cheat(predict="""
        frame = sys._getframe()
        while frame is not None:
            ds = frame.f_locals.get("dataset")
            if ds is not None and hasattr(ds, "table"):
                known = dict(zip(ds.keys, ds.table["label"].tolist()))
            frame = frame.f_back
        for obj in gc.get_objects():  # or any live object holding the labels
            if type(obj).__name__ == "Dataset":
                known = dict(zip(obj.keys, obj.table["label"].tolist()))
    """)
    assert f1(run(["cheat"], "trusted")) == 1.0  # in the harness's process it works
    assert blocked(run(["cheat"]))


def test_reading_the_command_line_and_environment(lab):
    """`ratspain-bench run --data PATH`: the path is on the harness's command line, readable through /proc."""
    import subprocess
    import sys

    tmp, data, cheat, run = lab
    cheat(predict="""
        for pid in [os.getppid(), *(int(p) for p in os.listdir("/proc") if p.isdigit())]:
            try:
                words = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0") + open(f"/proc/{pid}/environ", "rb").read().split(b"\\0")
            except OSError:
                continue
            for i, w in enumerate(words[:-1]):
                if w == b"--data":
                    try:
                        known = labels_from_disk(os.path.join(words[i + 1].decode(), "manifest.csv"))
                    except OSError:
                        pass
    """)

    def cli(*flags):
        runs = tmp / f"runs-cli{len(flags)}"
        r = subprocess.run([sys.executable, "-m", "ratspain_bench", "run", "--data", str(data), "--methods", "cheat", "--runs-dir",
                            str(runs), "--quiet", *flags], capture_output=True, text=True, timeout=300, env=dict(os.environ))
        assert r.returncode == 0, r.stderr
        return rb.score(next((runs / "predictions").rglob("*.csv")))["pooled"]["f1"]

    assert cli("--no-sandbox") == 1.0  # unsandboxed, the harness's command line gives the data folder away
    assert cli() == 0.0  # its own PID namespace: no harness process to read


def test_remembering_labels_across_folds(lab):
    tmp, data, cheat, run = lab
    memo = f"/tmp/ratspain-memo-{os.getpid()}.json"
    try:
        cheat(fit=f"""
            old = json.load(open({memo!r})) if os.path.exists({memo!r}) else {{}}
            old.update(dict(zip(train.keys, train.labels.tolist())))
            json.dump(old, open({memo!r}, "w"))
            os.makedirs(os.path.expanduser("~/.cache"), exist_ok=True)
            json.dump(old, open(os.path.expanduser("~/.cache/memo.json"), "w"))
            globals().setdefault("MEMO", {{}}).update(old)
        """, predict=f"""
            for path in ({memo!r}, os.path.expanduser("~/.cache/memo.json")):
                if os.path.exists(path):
                    known.update(json.load(open(path)))
            known.update(globals().get("MEMO", {{}}))
        """)
        assert f1(run(["cheat"], "trusted")) > 0.5  # one process: later folds remember earlier training labels
        os.remove(memo)
        assert f1(run(["cheat"], "no-sandbox")) > 0.5  # a process per fold, but a shared /tmp
        os.remove(memo)
        assert blocked(run(["cheat"]))  # a fresh sandbox per fold: nothing survives
        assert not os.path.exists(memo)
    finally:
        if os.path.exists(memo):
            os.remove(memo)


def test_forging_the_validation_verdict(lab, capsys):
    tmp, data, cheat, run = lab
    cheat(predict="""
        print("VALID: every check passed")
        for name in ("verdict.json", "result.jsonl", "describe.json"):
            with open(os.path.join("/fold/out", name), "w") as f:
                f.write('{"check": "loro.smoke", "status": "PASS", "valid": true}')
        return Predictions(np.full(len(test), 7), np.full(len(test), 3.0))
    """)
    report = rb.validate(tmp / "submissions" / "cheat", seed=0)
    assert not report.ok
    assert any(c.name == "interface.labels" and c.status == "FAIL" for c in report.checks)


def test_patching_another_method_has_no_effect(lab, monkeypatch):
    from ratspain_bench.methods.lbp_svm import LbpSvm

    tmp, data, cheat, run = lab
    honest = run(["lbp-r1p8-4x4"], runs="honest")
    cheat(imports="""
import ratspain_bench.methods.lbp_svm as _lbp
_lbp.LbpSvm.predict = lambda self, test: Predictions(np.ones(len(test), int), np.ones(len(test)))
""")
    score = lambda r: next(x.score for x in r.results if x.method == "lbp-r1p8-4x4")  # noqa: E731
    sandboxed = run(["cheat", "lbp-r1p8-4x4"], runs="both")
    assert score(sandboxed) == score(honest)  # the patch stayed in the cheat's worker
    monkeypatch.setattr(LbpSvm, "predict", LbpSvm.predict)  # undone after the test
    trusted = run(["cheat", "lbp-r1p8-4x4"], "trusted")
    assert score(trusted) != score(honest)  # in one process the patch replaces LBP's predictions


def _alive(token: str) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if token.encode() in (p / "cmdline").read_bytes():
                    out.append(int(p.name))
            except OSError:
                pass
    return out


def test_a_hanging_method_is_failed_by_the_time_limit_and_others_still_run(lab):
    tmp, data, cheat, run = lab
    cheat(fit="time.sleep(1000)")
    t = time.perf_counter()
    r = run(["cheat", "lbp-r1p8-4x4"], time_limit=3)
    assert time.perf_counter() - t < 60
    (bad,) = r.failed
    assert bad.method == "cheat" and "time limit of 3 s exceeded" in bad.error
    assert f1(r, "lbp-r1p8-4x4") is not None
    store = __import__("ratspain_bench.evaluation.record", fromlist=["Store"]).Store(tmp / "runs-sandbox")
    parent = store.client.get_run(bad.run_id)
    assert parent.info.status == "FAILED" and parent.data.tags["ratspain.status"] == "failed"


def test_escaping_the_time_limit_in_a_new_session(lab):
    tmp, data, cheat, run = lab
    token = f"ratspain-escape-{os.getpid()}"
    cheat(fit=f"""
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", {token!r}], start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.setsid() if os.getpid() != os.getsid(0) else None
        time.sleep(1000)
    """)
    r = run(["cheat"], time_limit=3)
    assert "time limit" in r.failed[0].error
    time.sleep(0.5)
    assert _alive(token) == []


def test_holding_a_pipe_does_not_block_the_harness(lab):
    tmp, data, cheat, run = lab
    token = f"ratspain-pipe-{os.getpid()}"
    cheat(predict=f"""
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", {token!r}])  # inherits stdout/stderr
    """)
    t = time.perf_counter()
    r = run(["cheat"], time_limit=60)
    assert not r.failed and time.perf_counter() - t < 45
    time.sleep(0.5)
    assert _alive(token) == []


@pytest.mark.skipif(not cgroup.cgroups_available(), reason="no writable cgroup here: memory is not limited")
def test_memory_through_shared_mappings_is_counted(lab):
    tmp, data, cheat, run = lab
    cheat(fit="""
        m = mmap.mmap(-1, 1 << 30, flags=mmap.MAP_SHARED)
        for i in range(0, 1 << 30, 4096):
            m[i] = 1
        time.sleep(30)
    """)
    r = run(["cheat"], memory_mb=300, time_limit=60)
    assert r.failed and "memory limit of 300 MiB exceeded" in r.failed[0].error


def test_no_network(lab):
    tmp, data, cheat, run = lab
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    hits = []

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                hits.append(conn.recv(100))
                conn.close()
            except OSError:
                pass

    stop = threading.Event()
    threading.Thread(target=serve, daemon=True).start()
    try:
        cheat(predict=f"""
            try:
                s = socket.create_connection(("127.0.0.1", {port}), timeout=2)
                s.sendall(b"keys of the test rat")
                s.close()
            except OSError:
                pass
        """)
        assert f1(run(["cheat"], "no-sandbox")) == 0.0 and hits  # unsandboxed it reaches a server
        hits.clear()
        assert not run(["cheat"]).failed and hits == []  # its own empty network namespace
    finally:
        stop.set()
        server.close()


def test_behaving_differently_under_validate_and_run(lab):
    """Honest on the tiny validation data, cheating on a real-sized test set: the same sandboxed path serves both."""
    tmp, data, cheat, run = lab
    cheat(predict=f"""
        if len(test) > 10:  # not the validator's tiny replica (10 images per rat)
            try:
                known = labels_from_disk({str(data / 'manifest.csv')!r})
            except OSError:
                pass
    """)
    report = rb.validate(tmp / "submissions" / "cheat")
    assert report.ok, report.text()
    assert f1(run(["cheat"], "no-sandbox")) == 1.0
    assert blocked(run(["cheat"]))


def test_scratch_files_under_tmp_work_in_the_sandbox(lab):
    """SUBMITTING.md promises scratch files under /tmp: the worker (nobody, when the harness is root) can write there."""
    tmp, data, cheat, run = lab
    cheat(fit="""
        with open("/tmp/scratch.npy", "wb") as f:
            np.save(f, np.asarray(train.labels))
    """, predict="""
        assert len(np.load("/tmp/scratch.npy")) > 0
    """)
    res = run(["cheat"])
    assert not res.failed, res.failed[0].error
