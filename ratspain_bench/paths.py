"""Where the project keeps its caches and runs (overridable by environment variables)."""
import os
from pathlib import Path


def cache_dir() -> Path:
    """`RATSPAIN_CACHE_DIR`, default `~/.cache/ratspain_bench`: decoded images, features, the replica."""
    return Path(os.environ.get("RATSPAIN_CACHE_DIR", Path.home() / ".cache" / "ratspain_bench"))


def secrets_dir() -> Path:
    """`RATSPAIN_SECRETS_DIR`, default `~/.local/share/ratspain_bench/secrets`: the seeds of hidden replicas (mode 0700)."""
    default = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "ratspain_bench" / "secrets"
    return Path(os.environ.get("RATSPAIN_SECRETS_DIR", default))


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write to a temporary sibling and rename, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def atomic_write_text(path: Path, text: str) -> None:
    """`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))
