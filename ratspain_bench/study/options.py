"""Settings every study shares (`study sensitivity` and `study tune` add their own)."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..evaluation.sandbox import SandboxSettings


@dataclass
class StudyOptions:
    method: str = "painseeker"
    profile: str = "quick"
    fixed: dict = field(default_factory=dict)  # other config settings held fixed (--set)
    seed: int = 0
    device: str = "auto"
    runs_dir: Path = Path("ratspain-runs")
    tracking_uri: str | None = None
    storage: str | None = None  # any Optuna storage URL; default: a journal file under runs_dir
    study_name: str | None = None
    out_dir: Path | None = None
    quiet: bool = False
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)  # outside methods
    protocol: str = "loro"  # how the data is cut into folds (`ratspain_bench.protocols`); tuning nests it

    def log(self, msg: str) -> None:
        """A progress line on stderr, unless quiet."""
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)
