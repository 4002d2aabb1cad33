"""The built-in default dataset: the synthetic replica, generated on first use into the cache."""
from __future__ import annotations

import sys
from pathlib import Path

from ..paths import cache_dir

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
