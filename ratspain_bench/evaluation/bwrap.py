"""Bubblewrap (`bwrap`): namespaces on the host's kernel. The fallback where gVisor cannot run (no `runsc`, not root,
a GPU this runsc cannot pass through). Filesystem, PID, IPC, network and UTS are private to the worker; the kernel is
not: its caches (pages, dentries) and counters are the host's, which a worker can read or set (see SECURITY.md), so
workers under bwrap never run at the same time on one machine (`sandbox`'s machine lock).

The seccomp filter (`seccomp.program`, loaded by `bwrap --seccomp FD`) refuses the kernel objects that outlive a
process (keyring, bpf), the page cache's exact probes and eviction calls, and namespaces of the worker's own.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

NOBODY = 65534


@lru_cache(maxsize=1)
def unavailable() -> str | None:
    """None when bubblewrap can run a sandbox here; else why not (one line)."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    try:
        r = subprocess.run(args([], []) + ["--", "/bin/true" if os.path.exists("/bin/true") else "true"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return f"bubblewrap cannot start here ({e})"
    if r.returncode != 0:
        return f"bubblewrap cannot create namespaces here ({(r.stderr or '').strip().splitlines()[-1:] or ['?']})"
    return None


def args(ro: list[tuple[str, str]], rw: list[tuple[str, str]], tmp_mb: int = 64, devices=(), seccomp_fd=None) -> list[str]:
    """The bwrap command up to `--`: the system folders and `ro` read-only, `rw` writable, private /tmp and /dev/shm."""
    out = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session"]
    if os.geteuid() != 0:
        out.insert(2, "--disable-userns")
        out.insert(2, "--unshare-user")
    else:  # privileged bwrap: no user namespace, the command drops to nobody itself (setpriv, below)
        out[1:2] = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup"]
    if seccomp_fd is not None:
        out += ["--seccomp", str(seccomp_fd)]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        p = Path("/") / top
        if p.is_symlink():
            out += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            out += ["--ro-bind", str(p), str(p)]
    out += ["--ro-bind", "/usr", "/usr", "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
            "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(tmp_mb << 20), "--tmpfs", "/tmp",
            "--perms", "1777", "--size", str(tmp_mb << 20), "--tmpfs", "/dev/shm"]  # 1777: writable by the worker's nobody
    for d in devices:
        out += ["--dev-bind-try", d, d]
    made = {"/", "/usr", "/tmp", "/dev", "/proc", "/etc"}
    for src, dst in ro + rw:
        chain, d = [], os.path.dirname(dst)
        while d not in made:
            chain.append(d)
            made.add(d)
            d = os.path.dirname(d)
        for c in reversed(chain):
            out += ["--perms", "0755", "--dir", c]
        out += ["--ro-bind" if (src, dst) in ro else "--bind", src, dst]
        made.add(dst)
    return out


def command(python: list[str], ro, rw, env: dict, tmp_mb: int, devices, seccomp_fd) -> list[str]:
    """The worker's command in its bubblewrap sandbox: cleared environment, /tmp as its folder, as root dropped to nobody
    with no capabilities and no_new_privs."""
    out = args(ro, rw, tmp_mb, devices, seccomp_fd)
    out += ["--clearenv", *[x for k, v in env.items() for x in ("--setenv", k, v)], "--chdir", "/tmp", "--"]
    if os.geteuid() == 0:
        out += ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all",
                "--bounding-set=-all", "--no-new-privs"]
    return out + python
