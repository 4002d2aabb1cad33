"""The sandbox's side doors: kernel objects that outlive a worker, two untrusted workers at once, labels in the
order of the test images, a public answer key, and outputs that hang or bloat the harness.

Each cheat is shown to work where its door is open (unsandboxed, between two plain processes, or on the table's
own order), then to score at chance or fail with a named reason through the harness.
"""
import ctypes
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cheats import blocked, f1
from tinydata import make_dataset

import ratspain_bench as rb
from ratspain_bench.errors import InputError
from ratspain_bench.evaluation import cgroup, sandbox
from ratspain_bench.evaluation.seccomp import TABLES

pytestmark = pytest.mark.skipif(sandbox.unavailable() is not None, reason=f"no sandbox here: {sandbox.unavailable()}")

# ---------------------------------------------------------------- 1. the kernel keyring outlives a worker

KEYRING = '''
import ctypes, platform
ADD_KEY, KEYCTL = {numbers}[platform.machine()]
LIBC = ctypes.CDLL(None, use_errno=True)
RINGS = (-4,)  # the user keyring: one per uid


def keyring_read(desc):
    for ring in RINGS:
        kid = LIBC.syscall(KEYCTL, 10, ring, b"user", desc, 0)  # KEYCTL_SEARCH
        if kid > 0:
            buf = ctypes.create_string_buffer(32768)
            n = LIBC.syscall(KEYCTL, 11, kid, buf, 32768)  # KEYCTL_READ
            if n > 0:
                return json.loads(buf.raw[:n])
    return {{}}


def keyring_write(desc, memo):
    data = json.dumps(memo).encode()
    for ring in RINGS:
        LIBC.syscall(ADD_KEY, b"user", desc, data, len(data), ring)
'''
NUMBERS = {m: (t[1]["add_key"], t[1]["keyctl"]) for m, t in TABLES.items()}


def _unlink_keys(desc: bytes) -> None:
    """Remove the test's keys from this process's keyrings (an unsandboxed worker of root shares root's)."""
    if platform.machine() not in NUMBERS:
        return
    libc, keyctl = ctypes.CDLL(None, use_errno=True), NUMBERS[platform.machine()][1]
    for ring in (-4,):
        kid = libc.syscall(keyctl, 10, ring, b"user", desc, 0)
        if kid > 0:
            libc.syscall(keyctl, 9, kid, ring)  # KEYCTL_UNLINK


@pytest.mark.skipif(platform.machine() not in NUMBERS, reason="no keyring syscall numbers for this machine")
def test_the_kernel_keyring_carries_nothing_from_one_worker_to_the_next(lab):
    tmp, data, cheat, run = lab
    desc = f"ratspain-memo-{uuid.uuid4().hex}".encode()
    module = KEYRING.format(numbers=NUMBERS)
    remember = f"""
        memo = keyring_read({desc!r})
        memo.update({{pixels(im): int(y) for im, y in zip(train.images, train.labels)}})
        keyring_write({desc!r}, memo)
    """
    cheat(fit=remember, predict=f"known = keyring_read({desc!r})", module=module, name="cheat")
    cheat(predict=f"known = keyring_read({desc!r})", module=module, name="reader")  # stores nothing
    try:
        assert f1(run(["cheat"], "no-sandbox")) > 0.5  # one uid, one keyring: each fold reads the ones before
        assert f1(run(["reader"], "no-sandbox"), "reader") == 1.0  # and a later submission reads every label
        _unlink_keys(desc)
        assert blocked(run(["cheat"]))  # sandboxed: add_key and keyctl are refused
        assert blocked(run(["reader"]), method="reader")
    finally:
        _unlink_keys(desc)


# ---------------------------------------------------------------- 2. two untrusted workers at once

FLOCK = '''
import fcntl, threading
FILES = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "**", "*.py"), recursive=True))  # shared, read-only
HELD, SEEN, STOP = [], set(), threading.Event()


def slot(digest):
    return int(digest[:8], 16) % len(FILES)


def send(pairs, hold):
    """One bit per file: a shared lock on file i says 'pain' for the images hashing to i."""
    STOP.set()
    for digest, label in pairs:
        if label:
            fd = os.open(FILES[slot(digest)], os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_SH)
            HELD.append(fd)
    time.sleep(hold)


def receive_forever():
    while not STOP.is_set():
        for i, f in enumerate(FILES):
            fd = os.open(f, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                SEEN.add(i)
            finally:
                os.close(fd)
        time.sleep(0.05)


threading.Thread(target=receive_forever, daemon=True).start()  # at import: in every worker, as early as it can
'''
SEND = "send([(pixels(im), int(y)) for im, y in zip(train.images, train.labels)], hold=2.5)"
RECEIVE = "known = {pixels(im): int(slot(pixels(im)) in SEEN) for im in test.images}"


def test_the_flock_channel_works_between_two_processes_at_once():
    """The channel itself: a process holding locks is read by another one running at the same time."""
    code = "import glob, os, time, hashlib\n" + FLOCK
    sender = subprocess.Popen([sys.executable, "-c", code + "\nsend([('00000001', 1), ('00000005', 1)], hold=3)"])
    try:
        time.sleep(1.0)
        out = subprocess.run([sys.executable, "-c", code + "\ntime.sleep(1); STOP.set(); time.sleep(0.2); print(sorted(SEEN))"],
                             capture_output=True, text=True, timeout=60).stdout
    finally:
        sender.wait(timeout=30)
    assert json.loads(out)[:2] == [1, 5]


def test_no_bwrap_worker_imports_its_method_while_another_holds_labels(lab):
    """Fold k's worker locks its training labels (the next rat's among them) while the next fold's worker, started
    ahead, would read them at import; a second submission's first worker, started with the run, likewise. Bubblewrap
    workers share the host's kernel, and its file locks: they wait for each other."""
    tmp, data, cheat, run = lab
    cheat(fit=SEND, predict=RECEIVE, module=FLOCK, name="cheat")
    assert blocked(run(["cheat"], "bwrap"))
    cheat(fit=SEND, module=FLOCK, name="sender")
    cheat(predict=RECEIVE, module=FLOCK, name="receiver")
    r = run(["sender", "receiver"], "bwrap", runs="pair")
    assert blocked(r, method="receiver")


TWO_HARNESSES = """
import sys, ratspain_bench as rb
r = rb.run([sys.argv[1]], sys.argv[2], runs_dir=sys.argv[3], sandbox="runsc")
row = r.table.set_index("method").loc[sys.argv[1]]
print(row["status"], row.get("pooled_f1"), row["error"])
"""


@pytest.mark.skipif(sandbox.unavailable("runsc") is not None, reason=f"no gVisor: {sandbox.unavailable('runsc')}")
def test_gvisor_workers_of_two_harnesses_run_at_once_and_share_no_lock(lab):
    """No machine lock under gVisor: a sender holding file locks on the shared installation in every fold, and a receiver
    polling them from its import on, run in two harness processes at the same time; the receiver sees nothing."""
    tmp, data, cheat, run = lab
    small = FLOCK.replace('"**", "*.py"), recursive=True))', '"*.py")))[:64]')  # a recursive glob takes ~20 s under gVisor
    assert small != FLOCK
    cheat(fit=SEND.replace("hold=2.5", "hold=4"), module=small, name="sender")
    cheat(predict=RECEIVE, module=small, name="receiver")
    procs = [subprocess.Popen([sys.executable, "-c", TWO_HARNESSES, name, str(data), str(tmp / f"runs-{name}")],
                              stdout=subprocess.PIPE, text=True, env=dict(os.environ)) for name in ("sender", "receiver")]
    out = [p.communicate(timeout=600)[0].split() for p in procs]
    assert out[0][0] == "complete" and out[1][0] == "complete", out
    assert float(out[1][1]) == 0.0  # it found no label


GATE = """
import sys, time
from ratspain_bench.evaluation import sandbox
from ratspain_bench.methods.registry import get_method
w = sandbox.Worker(get_method("cheat"), "describe", {"profile": None, "param_sets": []}, sandbox.SandboxSettings(sys.argv[1]))
w.arm()
print("armed", flush=True)
time.sleep(3)
w.close()
"""


@pytest.mark.parametrize("kind", ["bwrap", "runsc"])
def test_only_workers_that_share_the_kernel_take_the_machine_lock(lab, kind):
    """Another harness process's armed bwrap worker holds the machine lock: this process's bwrap worker waits for it to be
    gone (a red-team review found the lock in $TMPDIR, so two harnesses with different ones ran two workers at once).
    gVisor workers share no kernel state, so they take no lock: both are armed at once."""
    from ratspain_bench.methods.registry import get_method

    if sandbox.unavailable(kind):
        pytest.skip(sandbox.unavailable(kind))
    tmp, data, cheat, run = lab
    cheat()
    (tmp / "other-tmp").mkdir()  # the other harness has its own $TMPDIR: the lock is one for the machine all the same
    w = sandbox.Worker(get_method("cheat"), "describe", {"profile": None, "param_sets": []}, sandbox.SandboxSettings(kind))
    try:
        other = subprocess.Popen([sys.executable, "-c", GATE, kind], stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, "TMPDIR": str(tmp / "other-tmp")})
        assert other.stdout.readline().strip() == "armed"
        t = time.perf_counter()
        w.arm()
        waited = time.perf_counter() - t
        still = other.poll() is None
    finally:
        w.close()
        other.wait(timeout=60)
    if kind == "bwrap":
        assert waited > 2.0
    else:
        assert waited < 1.0 and still  # armed while the other one was


PAGE_CACHE = '''
FILE = {file!r}  # a big file of the shared installation that no process maps (test_kernel_state.big_file)
SLOTS = 128
SPACING = os.path.getsize(FILE) // (2 * SLOTS) // 4096 * 4096  # far apart: a probe's readahead reaches no other slot


def slot(image):
    return int(pixels(image)[:8], 16) % SLOTS


def cached(fd, i):
    """Whether page i is in the page cache, without loading it (preadv2 RWF_NOWAIT)."""
    try:
        return os.preadv(fd, [bytearray(1)], i * SPACING, os.RWF_NOWAIT) == 1
    except OSError:
        return False
'''
READ_THEN_WRITE = """
    fd = os.open(FILE, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no readahead: one page per read
    known = {pixels(im): int(cached(fd, SLOTS + slot(im)) and not cached(fd, slot(im))) for im in test.images}
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # every bit cleared
    for im, y in zip(self.train.images, self.train.labels):  # then one page per training image: slot + SLOTS * label
        os.pread(fd, 1, (SLOTS * int(y) + slot(im)) * SPACING)
"""


def test_the_page_cache_is_no_exact_store_between_folds(lab):
    """A red-team submission: evict pages of a shared library, load one page per training image (which page says its
    label), and let the next fold's worker test them without loading them. Exact between folds and between runs
    unsandboxed; sandboxed, eviction does nothing and the probe fails (seccomp)."""
    from test_kernel_state import big_file

    tmp, data, cheat, run = lab
    cheat(predict=READ_THEN_WRITE, module=PAGE_CACHE.format(file=big_file()))
    assert f1(run(["cheat"], "no-sandbox")) > 0.5  # rats after the first: read off the page cache
    assert blocked(run(["cheat"], "bwrap"))  # the seccomp filter (gVisor has no host page cache to probe: test_kernel_state)


# ---------------------------------------------------------------- 3. labels in the order of the test images


def _ordered_data(tmp: Path, form: str) -> tuple[Path, dict]:
    """The lab's kind of images, 40 per rat, as a SUBJECT/LEVEL tree (read in sorted order) or a manifest sorted by
    label; and each rat's count of no-pain images (what the paper's Table 2 publishes)."""
    src = make_dataset(tmp / f"src-{form}", per_subject=40, size=32)
    table = pd.read_csv(src / "manifest.csv")
    counts = {str(s): int((g["level"] == 0).sum()) for s, g in table.groupby("subject")}
    if form == "tree":
        root = tmp / "tree"
        for r in table.itertuples():
            dst = root / r.subject / str(r.level) / Path(r.path).name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / r.path, dst)
        return root, counts
    table.assign(label=(table["level"] >= 1).astype(int)).sort_values(["subject", "label"]).to_csv(src / "manifest.csv", index=False)
    return src, counts


def _by_position(counts: dict) -> str:
    return f"""
        n0 = {counts!r}[str(test.subjects[0])]
        return Predictions(np.array([0] * n0 + [1] * (len(test) - n0)), np.array([0.0] * n0 + [1.0] * (len(test) - n0)))
    """


@pytest.mark.parametrize("form", ["tree", "sorted-manifest"])
def test_the_order_of_the_test_images_carries_no_label(lab, form):
    tmp, data, cheat, run = lab
    root, counts = _ordered_data(tmp, form)
    ds = rb.load_dataset(root)
    by_position = ds.table.groupby("subject")["label"].transform(lambda y: (np.arange(len(y)) >= counts[y.name]).astype(int))
    assert (by_position == ds.table["label"]).all()  # in table order, position alone gives every label
    cheat(predict=_by_position(counts))
    for mode in ("trusted", "sandbox"):  # in-process and sandboxed alike: a secret random order
        r = run(["cheat"], mode, runs=f"order-{form}", on=root)
        acc = r.table.set_index("method").loc["cheat", "pooled_accuracy"]
        assert acc < 0.8, (mode, acc)  # by position it would be 1.0; at chance about 0.5


def test_saved_models_score_batches_in_a_secret_order_and_map_them_back(lab, tmp_path):
    """A sandboxed saved model whose scores are its input positions: they come back permuted within each batch, while
    its labels, computed from each image, come back on the right rows."""
    tmp, data, cheat, run = lab
    cheat(predict="""
        bright = np.array([int(im[12:20, 12:20].mean() > 128) for im in test.images])
        return Predictions(bright, np.arange(len(test)) / max(len(test) - 1, 1))
    """, module="""
        def save(self, folder):
            pass

        @classmethod
        def load(cls, config, folder, context=None):
            return cls(config, context)

        Cheat.save, Cheat.load = save, load
    """)
    model = rb.train("cheat", str(data), out=tmp_path / "model", runs_dir=tmp_path / "runs")
    frame = model.predict(str(data / "manifest.csv"))
    truth = pd.read_csv(data / "manifest.csv")["level"].ge(1).astype(int).to_numpy()
    assert (frame["pain"].to_numpy() == truth).all()  # each image's own prediction, on its own row
    positions = frame["pain_probability"].to_numpy()
    assert not np.all(np.diff(positions) > 0)  # not the input order


# ---------------------------------------------------------------- 4. a public answer key


RERENDER = """
    import csv, tempfile
    from ratspain_bench.data.cache import decode
    from ratspain_bench.data.synth import generate_replica
    out = os.path.join(tempfile.mkdtemp(), "replica")
    generate_replica(out, seed=0, size=32, counts={counts!r}, jobs=1)
    for row in csv.DictReader(open(os.path.join(out, "manifest.csv"))):
        if row["label"] != "":
            file = os.path.join(out, row["path"])
            known[pixels(decode(file, 32))] = int(row["label"])
            known[hashlib.sha1(open(file, "rb").read()).hexdigest()[:20]] = int(row["label"])  # content keys too
"""
COUNTS = {"r1": {"no_pain": 5, "moderate": 5}, "r2": {"no_pain": 4, "moderate": 6}, "r3": {"no_pain": 6, "moderate": 4}}


def _board_row(tmp: Path, runs: str, method: str) -> dict:
    """The method's row of the leaderboard's results.csv built from the runs folder `runs`, as text."""
    rb.leaderboard(tmp / f"board-{runs}", runs_dir=tmp / runs)
    rows = pd.read_csv(tmp / f"board-{runs}" / "results.csv", dtype=str, keep_default_na=False)
    return rows.set_index("method").loc[method].to_dict()


def test_a_re_rendered_public_replica_is_no_rank_and_a_hidden_one_no_answer_key(lab, monkeypatch):
    tmp, data, cheat, run = lab
    monkeypatch.setenv("RATSPAIN_SECRETS_DIR", str(tmp / "secrets"))
    public = rb.synth(tmp / "public", seed=0, size=32, counts=COUNTS).parent
    hidden = rb.synth(tmp / "hidden", size=32, counts=COUNTS, hidden=True).parent
    assert rb.load_dataset(public).labels_public and not rb.load_dataset(hidden).labels_public
    cheat(predict=RERENDER.format(counts=COUNTS))
    r = run(["cheat", "lbp-r1p8-4x4"], runs="public", on=public)
    assert f1(r) == 1.0  # sandboxed, it renders the public replica again and reads every label off the images
    row = _board_row(tmp, "public-sandbox", "cheat")
    assert row["kind"] == "unranked" and row["rank"] == "" and "labels anyone can recompute" in row["note"]
    assert _board_row(tmp, "public-sandbox", "lbp-r1p8-4x4")["rank"] == "1"  # built-in rows stay ranked
    r = run(["cheat"], runs="hidden", on=hidden)
    assert blocked(r)  # another seed: its rendering answers nothing
    row = _board_row(tmp, "hidden-sandbox", "cheat")
    assert row["kind"] == "method" and row["rank"] == "1"


def test_synth_hidden_keeps_its_seed_out_of_the_folder(tmp_path, monkeypatch, capsys):
    from ratspain_bench.cli import main

    monkeypatch.setenv("RATSPAIN_SECRETS_DIR", str(tmp_path / "secrets"))
    out = tmp_path / "held-out"
    assert main(["synth", str(out), "--hidden", "--size", "32", "--per-subject-counts", json.dumps(COUNTS)]) == 0
    (kept,) = (tmp_path / "secrets").iterdir()
    assert str(kept) in capsys.readouterr().out
    assert kept.stat().st_mode & 0o777 == 0o600 and (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700
    seed = json.loads(kept.read_text())["seed"]
    assert seed.bit_length() > 64
    for text in (str(seed), hex(seed)[2:], seed.to_bytes(16, "big").hex()):
        assert not any(text.encode() in f.read_bytes() for f in out.rglob("*") if f.is_file())
    assert json.loads((out / "provenance.json").read_text())["labels_public"] is False
    assert main(["synth", str(tmp_path / "again"), "--hidden", "--seed", "3"]) == 2  # a hidden seed is never chosen


def test_the_built_in_replica_and_seeded_replicas_have_public_labels(tmp_path, monkeypatch):
    from ratspain_bench.data import replica

    folder = rb.synth(tmp_path / "seeded", seed=7, size=32, counts=COUNTS).parent
    assert rb.load_dataset(folder).labels_public
    (folder / "provenance.json").unlink()
    assert not rb.load_dataset(folder).labels_public  # a folder a maintainer points at: secret unless declared
    monkeypatch.setattr(replica, "default_replica", lambda *a, **k: folder)
    assert rb.load_dataset(None).labels_public  # the built-in replica: public, declared or not
    (folder / "provenance.json").write_text('{"labels_public": "maybe"}')
    with pytest.raises(InputError, match="provenance.json: labels_public must be true or false"):
        rb.load_dataset(folder)


# ---------------------------------------------------------------- 5. outputs that hang or bloat the harness


def _in_thread(fn, timeout: float):
    """fn() in a daemon thread: (its result, seconds); fails the test, never hangs it, if fn does not return in time."""
    box = {}

    def go():
        try:
            box["result"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box["error"] = e

    t0 = time.perf_counter()
    th = threading.Thread(target=go, daemon=True)
    th.start()
    th.join(timeout)
    assert not th.is_alive(), f"still running after {timeout} s: the harness hangs"
    if "error" in box:
        raise box["error"]
    return box["result"], time.perf_counter() - t0


def test_a_fifo_left_at_error_json_hangs_nothing(lab):
    tmp, data, cheat, run = lab
    cheat(fit='os.mkfifo("/fold/out/error.json"); sys.stdout.flush(); os._exit(1)')
    r, seconds = _in_thread(lambda: run(["cheat", "lbp-r1p8-4x4"], time_limit=20), 120)
    assert seconds < 20 + 30
    (bad,) = r.failed
    assert bad.method == "cheat" and "exited with code 1" in bad.error
    assert f1(r, "lbp-r1p8-4x4") is not None  # the built-in beside it is scored


def test_a_folder_left_at_describe_json_is_a_named_error(lab):
    """Found by a red-team review: a directory where the harness reads JSON raised an uncaught IsADirectoryError."""
    tmp, data, cheat, run = lab
    cheat(imports='if json.load(open("/fold/in/request.json"))["job"] == "describe":\n    os.mkdir("/fold/out/describe.json")\n'
                  '    sys.stdout.flush()\n    os._exit(0)')
    with pytest.raises(InputError, match="cheat: its sandboxed worker gave no description.*describe.json is not a regular file"):
        run(["cheat"])


def test_a_fifo_left_at_info_json_hangs_no_training(lab):
    tmp, data, cheat, run = lab
    cheat(module='''
        def save(self, folder):
            os.mkfifo("/fold/out/info.json")
            sys.stdout.flush()
            os._exit(0)

        Cheat.save = save
    ''')
    model, seconds = _in_thread(lambda: rb.train("cheat", str(data), out=tmp / "m", runs_dir=tmp / "runs", time_limit=20), 120)
    assert seconds < 20 + 30 and model.meta["predict_batch"] == 64  # its info refused: the default batch


WRITERS = {
    "a FIFO": ('os.mkfifo("/fold/out/predictions.npz")', "not a regular file"),
    "a symlink to a host file": ('os.symlink("/etc/hostname", "/fold/out/predictions.npz")', "cannot be opened as a plain file"),
    "a 64 MiB au member in the binary task": (
        'np.savez("/fold/out/predictions.npz", labels=np.zeros(len(test), int), scores=np.zeros(len(test)), '
        'au_orbital=np.zeros(8 << 20))', "more than the limit"),
    "a header claiming 10**12 values": (
        'import io, zipfile\n'
        'h = io.BytesIO(); np.lib.format.write_array_header_1_0(h, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})\n'
        'np.savez("/fold/out/p.npz", labels=np.zeros(len(test), int))\n'
        'z = zipfile.ZipFile("/fold/out/p.npz", "a"); z.writestr("scores.npy", h.getvalue() + b"x" * 64); z.close()\n'
        'os.rename("/fold/out/p.npz", "/fold/out/predictions.npz")', "far more than one value per test image"),
    "a zip bomb": (
        'import zipfile\nz = zipfile.ZipFile("/fold/out/predictions.npz", "w", zipfile.ZIP_DEFLATED)\n'
        'z.writestr("labels.npy", b"\\0" * (16 << 20)); z.writestr("scores.npy", b"\\0" * 64); z.close()',
        "far more than"),
}


@pytest.mark.parametrize("what", list(WRITERS))
def test_predictions_are_read_as_a_hostile_file(lab, what):
    """Under bubblewrap what the worker writes reaches the harness as it is; under gVisor a FIFO or a link may stay inside
    the sandbox (no predictions at all): either way the fold fails, with a reason, and nothing hangs."""
    tmp, data, cheat, run = lab
    write, reason = WRITERS[what]
    cheat(predict=write + "\nsys.stdout.flush(); os._exit(0)")
    for kind in ("bwrap", "runsc"):
        r, _ = _in_thread(lambda: run(["cheat"], kind, time_limit=60), 120)
        error = r.failed[0].error if r.failed else "its file was read"
        assert r.failed and (reason in error or (kind == "runsc" and "no predictions.npz" in error)), (kind, error)


@pytest.mark.parametrize("kind", ["bwrap", "runsc"])
def test_what_a_worker_writes_is_bounded(lab, kind):
    """Its log, one file and /fold/out as a whole: each stops at --out-limit, the fold fails with the reason (gVisor
    applies no RLIMIT_FSIZE to the log, a descriptor of the host's: the log is a tmpfs of that size there). The inode
    cap is shown under bubblewrap only: 200,000 files through gVisor's file server take minutes."""
    if sandbox.unavailable(kind):
        pytest.skip(sandbox.unavailable(kind))
    tmp, data, cheat, run = lab
    cheat(fit='sys.stdout.write("x" * (64 << 20)); sys.stdout.flush()', name="chatty")
    cheat(fit='open("/fold/out/big", "wb").write(b"x" * (64 << 20))', name="big")
    cheat(fit='[open(f"/fold/out/{i}", "w").close() for i in range(200_000)]', name="many")
    names = ["chatty", "big", "many"] if kind == "bwrap" else ["chatty", "big"]
    r = run(names, kind, out_mb=8, time_limit=120)
    errors = {x.method: x.error for x in r.failed}
    assert any(w in errors["chatty"] for w in ("File too large", "larger than the limit of 8 MiB", "limit of 8 MiB to its log")), \
        errors["chatty"]
    assert any(w in errors["big"] for w in ("8 MiB", "No space left", "File too large")), errors["big"]
    if os.geteuid() == 0 and "many" in names:  # a tmpfs of capped size and inodes
        assert "No space left" in errors["many"] or "filled /fold/out" in errors["many"], errors.get("many")
    assert not list(Path(tempfile.gettempdir()).glob(f"ratspain-fold-{cgroup.owner()}-*"))  # nothing left behind


KILLED = """
import ratspain_bench as rb, sys
rb.run(["cheat"], sys.argv[1], runs_dir=sys.argv[2], time_limit=300)
"""


def test_a_killed_harness_leaves_nothing_the_next_run_does_not_clean(lab, monkeypatch):
    """The harness has a $TMPDIR of its own: a run in another test process sweeps the shared one, and once did so
    between the kill and the look."""
    tmp, data, cheat, run = lab
    cheat(fit="time.sleep(300)")
    scratch = tmp / "tmpdir"
    scratch.mkdir()
    harness = subprocess.Popen([sys.executable, "-c", KILLED, str(data), str(tmp / "killed")],
                               env={**os.environ, "TMPDIR": str(scratch)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mine = lambda: list(scratch.glob(f"ratspain-fold-{harness.pid}-*"))  # noqa: E731
    groups = lambda: [d for _, _, p in cgroup.parents() for d in p.glob(f"ratspain-{harness.pid}-*")]  # noqa: E731
    deadline = time.monotonic() + 120
    while not (mine() and (groups() or not cgroup.cgroups_available())) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert mine(), "the harness never started its worker"
    harness.send_signal(signal.SIGKILL)
    harness.wait()
    time.sleep(0.5)
    assert mine()  # left behind: nobody removed them
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    sandbox.sweep.cache_clear()
    sandbox.sweep()  # what the next run's first worker does
    assert not mine() and not groups()


def _bpf(program: bytes, arch: int, nr: int, arg2: int = 0, arg0: int = 0) -> int:
    """An independent reading of a classic BPF seccomp program: the action it returns for one system call."""
    import struct

    data = struct.pack("=iIQ6Q", nr, arch, 0, arg0, 0, arg2, 0, 0, 0)
    ops = [struct.unpack("=HBBI", program[i:i + 8]) for i in range(0, len(program), 8)]
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = ops[pc]
        if code == 0x20:  # ld [k]
            acc = struct.unpack_from("=I", data, k)[0]
        elif code in (0x15, 0x35, 0x45):  # jeq / jge / jset #k
            pc += jt if {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code] else jf
        elif code == 0x06:  # ret #k
            return k
        else:
            raise AssertionError(f"unexpected BPF op {code:#x}")
        pc += 1


@pytest.mark.parametrize("machine", sorted(TABLES))
def test_the_seccomp_filter_refuses_what_it_says_and_allows_the_rest(machine):
    from ratspain_bench.evaluation import seccomp

    arch, nr = TABLES[machine]
    prog = seccomp.program(machine)
    allow, eperm, enosys, noop = 0x7FFF0000, 0x50000 | 1, 0x50000 | 38, 0x50000
    for name in ("add_key", "request_key", "keyctl", "bpf", "cachestat", "process_madvise", "unshare", "setns"):
        assert _bpf(prog, arch, nr[name]) == eperm, name
    for name in ("preadv2", "pwritev2", "io_uring_setup", "clone3"):
        assert _bpf(prog, arch, nr[name]) == enosys, name
    assert _bpf(prog, arch, nr["fadvise64"]) == noop  # eviction: succeeds, does nothing
    assert _bpf(prog, arch, nr["madvise"], 21) == noop and _bpf(prog, arch, nr["madvise"], 20) == noop  # PAGEOUT, COLD
    assert _bpf(prog, arch, nr["madvise"], 4) == allow  # DONTNEED of its own memory
    assert _bpf(prog, arch, nr["clone"], arg0=0x3D0F00) == allow  # a thread (pthread_create's flags)
    assert _bpf(prog, arch, nr["clone"], arg0=0x01200011) == allow  # fork
    assert _bpf(prog, arch, nr["clone"], arg0=0x10000000 | 0x11) == eperm  # a new user namespace
    for other in (0, 1, 2, 3, 9, 59, 231):  # read, write, open, close, mmap, execve, exit_group (x86_64 numbers)
        assert _bpf(prog, arch, other) == allow
    assert _bpf(prog, 0x40000003, 1) == enosys  # the 32-bit ABI
    if machine == "x86_64":
        assert _bpf(prog, arch, 0x40000000 | 1) == enosys  # x32
