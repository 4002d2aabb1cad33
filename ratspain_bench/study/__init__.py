"""Optuna studies over the LORO protocol.

- `sensitivity`: one-at-a-time grids (the paper's Figure 5), GridSampler, scored on the test rats
  (an analysis, not a tuning result);
- `tune`: TPE search with nested LORO (the test rat never chooses a hyper-parameter), pruning across
  inner folds, parameter importance;
- `storage`: a local journal file by default, any Optuna storage URL for workers on several machines;
- `evaluate`: fold runs with predictions cached on disk by (config, fold); `report`: CSV, figure, Markdown.
"""
from .sensitivity import FIGURE5_DEFAULTS, FIGURE5_GRID, SensitivityOptions, run_sensitivity
from .tune import TuneOptions, run_tune

__all__ = ["FIGURE5_DEFAULTS", "FIGURE5_GRID", "SensitivityOptions", "TuneOptions", "run_sensitivity", "run_tune"]
