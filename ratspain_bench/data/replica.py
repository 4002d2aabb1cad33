"""The built-in default dataset: the synthetic replica, generated on first use into the cache."""
from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

from ..paths import cache_dir, secrets_dir

DEFAULT_SEED = 0
DEFAULT_SIZE = 256


def default_replica(seed: int = DEFAULT_SEED, size: int = DEFAULT_SIZE) -> Path:
    """Folder of the default replica (Table 2 counts), rendering it once if the cache lacks it."""
    from .synth import REPLICA_VERSION, generate_replica

    out = cache_dir() / "replica" / f"v{REPLICA_VERSION}-seed{seed}-{size}px"
    if (out / "manifest.csv").is_file():
        return out

    print(f"Rendering the synthetic RatsPain replica (seed {seed}, {size} px) into {out} ...", file=sys.stderr)
    try:
        generate_replica(out, seed=seed, size=size)
    except (FileExistsError, ValueError, OSError):
        if not (out / "manifest.csv").is_file():  # another process finished it first: fine
            raise
    return out


def hidden_replica(out_dir, size: int = DEFAULT_SIZE, counts: dict | None = None, jobs: int | None = None, progress=None,
                   low_confidence: int | None = None, sites: int | None = None) -> tuple[Path, Path]:
    """A replica rendered from a 128-bit seed drawn from the operating system, so nobody can render its labels again:
    (its manifest, the file that keeps the seed). The seed is written only there, outside `out_dir`, readable by its
    owner alone (`paths.secrets_dir`); the folder's own `provenance.json` says its labels are not public."""
    from .synth import generate_replica

    seed = secrets.randbits(128)
    manifest = generate_replica(out_dir, seed=seed, size=size, counts=counts, jobs=jobs, progress=progress,
                                low_confidence=low_confidence, hidden=True, sites=sites)
    folder = secrets_dir()
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    kept = folder / f"{Path(out_dir).name}-{secrets.token_hex(6)}.json"
    fd = os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"replica": str(Path(out_dir).resolve()), "seed": seed, "size": size, "counts": counts,
                   "low_confidence": low_confidence, "sites": sites}, f, indent=1)
    return manifest, kept
