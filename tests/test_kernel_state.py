"""Kernel state one worker leaves and the next reads (a red-team review of the bubblewrap sandbox): the page cache of
the shared installation read exactly through `/proc/self/pagemap` or `/proc/self/statm`, the negative-dentry count of
`/proc/sys/fs/dentry-state`, and, found while closing those, the access times of the installation's files.

Each cheat is shown to work where its door is open (bubblewrap shares the host's kernel), then to score at chance under
gVisor (`runsc`: a kernel of its own per worker), within one run and across runs and submissions.
"""
import glob
import os
import sys
import time
import uuid
from pathlib import Path

import pytest
from cheats import blocked, f1

from ratspain_bench.evaluation import sandbox

bwrap_missing = sandbox.unavailable("bwrap")
runsc_missing = sandbox.unavailable("runsc")
pytestmark = pytest.mark.skipif(bool(bwrap_missing or runsc_missing),
                                reason=f"needs both sandboxes: {bwrap_missing or runsc_missing}")


def big_file() -> str:
    """The largest shared library of the installation that no fold or test maps: none that `import torch,
    torchvision` maps (torch maps cuBLASLt eagerly, torchvision Triton; every worker and every other test's process
    touched their pages, and the channel drowned in them when another test file ran beside this one)."""
    import torch  # noqa: F401  (what every deep fold imports)
    import torchvision  # noqa: F401  (the detector's tests)

    maps = Path("/proc/self/maps").read_text()
    files = glob.glob(os.path.join(sys.prefix, "lib", "python3*", "site-packages", "**", "*.so*"), recursive=True)
    return max((f for f in files if os.path.realpath(f) not in maps), key=os.path.getsize)


def evict(path: str) -> None:
    """Drop a file's pages from the page cache (the host side of the test, so each cheat starts from clean bits)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- 1. the page cache, read exactly

PAGE_CACHE = '''
import ctypes, mmap, struct
FILE = {file!r}
SLOTS = 256
BLOCK = 1 << 16  # the kernel's fault-around block: 16 pages
SPACING = os.path.getsize(FILE) // (2 * SLOTS + 2) // BLOCK * BLOCK  # one block per slot and label, far apart
LIBC = ctypes.CDLL(None, use_errno=True)


def mapping():
    fd = os.open(FILE, os.O_RDONLY)
    m = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
    LIBC.madvise(ctypes.c_void_p(address(m)), ctypes.c_size_t(len(m)), 1)  # MADV_RANDOM: no read-around
    return m


def address(m):
    return np.frombuffer(m, dtype=np.uint8, count=1).__array_interface__["data"][0]


def page(image, label):
    return (int(pixels(image)[:8], 16) % SLOTS + SLOTS * int(label)) * SPACING


def write(train):
    """One page per training image, chosen by its pixels and its label: loaded into the page cache, nothing else."""
    m = mapping()
    for im, y in zip(train.images, train.labels):
        m[page(im, y)]


def resident_pagemap(m, offset):
    with open("/proc/self/pagemap", "rb") as f:
        f.seek((address(m) + offset) // 4096 * 8)
        return bool(struct.unpack("<Q", f.read(8))[0] >> 63)


def resident_statm():
    return int(open("/proc/self/statm").read().split()[1])


def read(test, how):
    """Fault the page beside each candidate: the kernel maps the block's pages that are cached already; which ones
    shows in pagemap (or in the resident count), without loading the candidate itself."""
    m = mapping()
    known = {{}}
    for im in test.images:
        seen = []
        for label in (0, 1):
            p = page(im, label)
            if how == "pagemap":
                m[p + 4096]
                seen.append(resident_pagemap(m, p))
            else:
                before = resident_statm()
                m[p + 4096]
                seen.append(resident_statm() - before > 1)
        if seen[0] != seen[1]:
            known[pixels(im)] = int(seen[1])
    return known
'''


@pytest.mark.parametrize("how", ["pagemap", "statm"])
def test_the_page_cache_is_read_exactly_under_bwrap_and_not_under_runsc(lab, how):
    """Within a run (fold k's worker trains on the next rats' labels), and across runs and submissions (a reader that
    stores nothing, run later, reads what the first left)."""
    tmp, data, cheat, run = lab
    module = PAGE_CACHE.format(file=big_file())
    cheat(fit="write(train)", predict=f"known = read(test, {how!r})", module=module, name="cheat")
    cheat(predict=f"known = read(test, {how!r})", module=module, name="reader")
    evict(big_file())
    assert f1(run(["cheat"], "bwrap")) > 0.5  # rats after the first: read off the shared page cache
    assert f1(run(["reader"], "bwrap"), "reader") > 0.5  # every rat: the other submission's folds left them all
    evict(big_file())
    assert blocked(run(["cheat"], "runsc"))
    assert blocked(run(["reader"], "runsc"), method="reader")


# ---------------------------------------------------------------- 2. the negative-dentry count, read exactly

DENTRIES = '''
DIR = os.path.dirname(os.__file__)  # the shared, read-only installation


def name(image, label):
    return os.path.join(DIR, f"rb-{{pixels(image)[:16]}}-{{int(label)}}")


def write(train):
    """Look up one missing name per training image, chosen by its pixels and its label: a negative dentry stays."""
    for im, y in zip(train.images, train.labels):
        os.path.exists(name(im, y))


def negative():
    return int(open("/proc/sys/fs/dentry-state").read().split()[4])


def read(test):
    """A lookup an earlier worker made leaves the count where it was; a new one adds a negative dentry."""
    known = {{}}
    for im in test.images:
        grew = []
        for label in (0, 1):
            before = negative()
            os.path.exists(name(im, label))
            grew.append(negative() > before)
        if grew[0] != grew[1]:
            known[pixels(im)] = int(not grew[1])
    return known
'''


def test_the_dentry_count_is_read_exactly_under_bwrap_and_not_under_runsc(lab):
    """Within a run, and across runs and submissions: a writer that never reads (a read looks both names up, which
    leaves both), then a reader."""
    tmp, data, cheat, run = lab
    for kind in ("bwrap", "runsc"):  # names never looked up before: no dentry left by an earlier run or kind
        fresh = lambda: DENTRIES.format().replace("rb-", f"rb-{uuid.uuid4().hex[:12]}-")  # noqa: E731
        cheat(fit="write(train)", predict="known = read(test)", module=fresh(), name="cheat")
        within = run(["cheat"], kind)
        module = fresh()
        cheat(fit="write(train)", module=module, name="writer")
        cheat(predict="known = read(test)", module=module, name="reader")
        run(["writer"], kind)
        later = run(["reader"], kind)
        if kind == "bwrap":
            assert f1(within) > 0.5 and f1(later, "reader") > 0.5
        else:
            assert blocked(within) and blocked(later, method="reader")


# ---------------------------------------------------------------- 3. access times of the installation's files

ATIMES = '''
FILES = {files!r}


def file(image, label):
    return FILES[int(pixels(image)[:8], 16) % (len(FILES) // 2) * 2 + int(label)]


def write(train):
    """Read one file per training image, chosen by its pixels and its label: its access time moves (relatime: once a day)."""
    for im, y in zip(train.images, train.labels):
        open(file(im, y), "rb").read(1)


def read(test):
    known = {{}}
    recent = [time.time() - 3600]
    for im in test.images:
        seen = [os.stat(file(im, label)).st_atime > recent[0] for label in (0, 1)]
        if seen[0] != seen[1]:
            known[pixels(im)] = int(seen[1])
    return known
'''


def old_files(n: int = 512) -> list[str]:
    """`n` files of the installation that nothing here reads, their access times set a year back (relatime moves an
    access time older than a day on the next read)."""
    import email

    files = sorted(glob.glob(os.path.join(os.path.dirname(email.__file__), "**", "*.py"), recursive=True)
                   + glob.glob(os.path.join(os.path.dirname(os.__file__), "test", "**", "*.py"), recursive=True))[:n]
    year_ago = time.time() - 365 * 86400
    for f in files:
        os.utime(f, (year_ago, os.stat(f).st_mtime))
    return files


@pytest.mark.skipif(os.geteuid() != 0, reason="sets access times of the installation's files")
def test_access_times_of_the_installation_carry_no_label(lab):
    """Found while closing the caches: runsc's file server read the installation on a read-write view, so reading a file
    moved its access time (exact, one bit per file and day). Unsandboxed that is so too; both sandboxes mount it read-only."""
    tmp, data, cheat, run = lab
    cheat(fit="write(train)", predict="known = read(test)", module=ATIMES.format(files=old_files()))
    assert f1(run(["cheat"], "no-sandbox")) > 0.5
    for kind in ("bwrap", "runsc"):
        files = old_files()
        assert blocked(run(["cheat"], kind, runs=f"atime-{kind}")), kind
        assert all(os.stat(f).st_atime < time.time() - 86400 for f in files)
