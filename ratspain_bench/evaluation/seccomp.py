"""A seccomp filter for sandboxed workers: the kernel objects that outlive a process are refused, and so are the
exact probes of the page cache that two workers run one after the other could signal through.

Every worker runs under the same uid (65534 as root, the user's own uid otherwise), and the kernel keeps one user
keyring per uid: a key added in one worker is there for the next fold's worker, or the next submission's. The
filter makes `add_key`, `request_key` and `keyctl` fail with EPERM (and `bpf`, whose objects can be pinned).

The page cache of the shared read-only installation is another store that outlives a worker: a worker could evict
pages (`posix_fadvise(DONTNEED)`, `madvise(MADV_PAGEOUT/MADV_COLD)`) and the next one test them without touching
them (`preadv2(RWF_NOWAIT)`, `cachestat`, io_uring), an exact bit store (measured by a red-team submission: F1 1.0
across folds and runs). Here the eviction calls succeed without doing anything, and the probes fail (ENOSYS,
EPERM). What stays is timing (a cached page reads in ~1 us, a missing one in ~50 us): see SECURITY.md.

No namespaces of its own either (`unshare`, `setns`, `clone` with a CLONE_NEW* flag: EPERM): less kernel to
attack from inside. Every system call of another ABI (32-bit `int 0x80`, x32) fails with ENOSYS, so the numbers checked cannot be
bypassed. Other shared kernel state is private per worker already (IPC, network, PID and mount namespaces).

The program is classic BPF as `bwrap --seccomp FD` loads it (what libseccomp's `seccomp_export_bpf` writes),
built here for x86_64 and aarch64; `program()` is None on other machines.
"""
from __future__ import annotations

import errno
import platform
import struct

_NR, _ARCH, _ARG2 = 0, 4, 32  # struct seccomp_data: int nr; u32 arch; u64 ip; u64 args[6] (low word of args[2], little-endian)
_ARG0 = 16
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _ERRNO = 0x7FFF0000, 0x00050000
_X32_BIT = 0x40000000
MADV_COLD, MADV_PAGEOUT = 20, 21
CLONE_NEW = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET: no namespaces of its own

# machine -> (AUDIT_ARCH_*, {name: number})
TABLES = {
    "x86_64": (0xC000003E, {"add_key": 248, "request_key": 249, "keyctl": 250, "bpf": 321, "fadvise64": 221, "madvise": 28,
                            "preadv2": 327, "pwritev2": 328, "io_uring_setup": 425, "cachestat": 451, "process_madvise": 440,
                            "unshare": 272, "setns": 308, "clone": 56, "clone3": 435}),
    "aarch64": (0xC00000B7, {"add_key": 217, "request_key": 218, "keyctl": 219, "bpf": 280, "fadvise64": 223, "madvise": 233,
                             "preadv2": 286, "pwritev2": 287, "io_uring_setup": 425, "cachestat": 451, "process_madvise": 440,
                             "unshare": 97, "setns": 268, "clone": 220, "clone3": 435}),
}
REFUSED = {"add_key": errno.EPERM, "request_key": errno.EPERM, "keyctl": errno.EPERM, "bpf": errno.EPERM,
           "preadv2": errno.ENOSYS, "pwritev2": errno.ENOSYS, "io_uring_setup": errno.ENOSYS, "cachestat": errno.EPERM,
           "process_madvise": errno.EPERM, "unshare": errno.EPERM, "setns": errno.EPERM,
           "clone3": errno.ENOSYS}  # clone3's flags are behind a pointer: libc falls back to clone, whose flags are checked
IGNORED = ("fadvise64",)  # succeed without doing anything (callers treat it as a hint)


def program(machine: str | None = None) -> bytes | None:
    """The filter for this machine (`platform.machine()`), or None where no syscall table is known."""
    table = TABLES.get(machine or platform.machine())
    if table is None:
        return None
    arch, nr = table
    ops: list = []  # (code, k, jump-if-true label or None) ; labels resolved below
    ret = {"allow": _ALLOW, "noop": _ERRNO | 0, "enosys": _ERRNO | errno.ENOSYS, **{f"e{n}": _ERRNO | n for n in set(REFUSED.values())}}
    ops += [(_LD_W_ABS, _ARCH, None), (_JEQ_K, arch, "native"), (_RET_K, ret["enosys"], None), ("native",),
            (_LD_W_ABS, _NR, None)]
    if arch == TABLES["x86_64"][0]:
        ops.append((_JGE_K, _X32_BIT, "enosys"))  # x32 calls carry this bit
    for name, code in REFUSED.items():
        ops.append((_JEQ_K, nr[name], f"e{code}"))
    for name in IGNORED:
        ops.append((_JEQ_K, nr[name], "noop"))
    ops += [(_JEQ_K, nr["madvise"], "madvise"), (_JEQ_K, nr["clone"], "clone"), (_RET_K, ret["allow"], None)]
    ops += [("madvise",), (_LD_W_ABS, _ARG2, None), (_JEQ_K, MADV_COLD, "noop"), (_JEQ_K, MADV_PAGEOUT, "noop"),
            (_RET_K, ret["allow"], None)]
    ops += [("clone",), (_LD_W_ABS, _ARG0, None), (_JSET_K, CLONE_NEW, f"e{errno.EPERM}"), (_RET_K, ret["allow"], None)]
    for label, value in ret.items():
        ops += [(label,), (_RET_K, value, None)]
    return _assemble(ops)


def _assemble(ops: list) -> bytes:
    """Instructions with symbolic jump targets: a 1-tuple is a label; (code, k, label) jumps to label when true."""
    where, pc = {}, 0
    for op in ops:
        if len(op) == 1:
            where.setdefault(op[0], pc)
        else:
            pc += 1
    out, pc = [], 0
    for op in ops:
        if len(op) == 1:
            continue
        code, k, target = op
        jt = 0 if target is None else where[target] - pc - 1
        if not 0 <= jt < 256:
            raise ValueError(f"jump to {target!r} out of range")
        out.append(struct.pack("=HBBI", code, jt, 0, k))
        pc += 1
    return b"".join(out)
