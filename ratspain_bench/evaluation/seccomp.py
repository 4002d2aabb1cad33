"""A seccomp filter for sandboxed workers: the kernel objects that outlive a process are refused.

Every worker runs under the same uid (65534 as root, the user's own uid otherwise), and the kernel keeps
one user keyring per uid: a key added in one worker is there for the next fold's worker, or the next
submission's. The filter makes `add_key`, `request_key` and `keyctl` fail with EPERM (and `bpf`, whose
objects can be pinned), and refuses every system call of another ABI (32-bit `int 0x80`, x32), which
would otherwise bypass the numbers checked. Other shared kernel state is private per worker already
(IPC, network, PID and mount namespaces: message queues, SysV IPC, abstract sockets, /tmp, /dev/shm).

The program is classic BPF as `bwrap --seccomp FD` loads it (what libseccomp's `seccomp_export_bpf`
writes), built here for x86_64 and aarch64; `program()` is None on other machines.
"""
from __future__ import annotations

import errno
import platform
import struct

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]
_NR, _ARCH = 0, 4
_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_X32_BIT = 0x40000000

# machine -> (AUDIT_ARCH_*, {name: number}) of the calls refused
DENIED = ("add_key", "request_key", "keyctl", "bpf")
TABLES = {
    "x86_64": (0xC000003E, {"add_key": 248, "request_key": 249, "keyctl": 250, "bpf": 321}),
    "aarch64": (0xC00000B7, {"add_key": 217, "request_key": 218, "keyctl": 219, "bpf": 280}),
}


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes | None:
    """The filter for this machine (`platform.machine()`), or None where no syscall table is known."""
    table = TABLES.get(machine or platform.machine())
    if table is None:
        return None
    arch, numbers = table
    denied = [numbers[name] for name in DENIED]
    deny, other_abi = _ERRNO | errno.EPERM, _ERRNO | errno.ENOSYS
    # 0 ld arch; 1 jeq native -> 3; 2 ret ENOSYS; 3 ld nr; [4 jge x32 -> ENOSYS]; each denied: jeq -> EPERM; ret ALLOW; EPERM; ENOSYS
    checks = len(denied) + (1 if arch == TABLES["x86_64"][0] else 0)
    ops = [_op(_LD_W_ABS, _ARCH), _op(_JEQ_K, arch, 1, 0), _op(_RET_K, other_abi), _op(_LD_W_ABS, _NR)]
    if arch == TABLES["x86_64"][0]:  # x32 calls carry this bit: refused as another ABI
        ops.append(_op(_JGE_K, _X32_BIT, checks + 1, 0))
    for i, nr in enumerate(denied):
        left = len(denied) - i - 1  # checks after this one; then ALLOW, then EPERM
        ops.append(_op(_JEQ_K, nr, left + 1, 0))
    ops += [_op(_RET_K, _ALLOW), _op(_RET_K, deny), _op(_RET_K, other_abi)]
    return b"".join(ops)
