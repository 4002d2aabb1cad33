"""Optuna studies over the LORO protocol.

- `sensitivity`: one-at-a-time grids (default: the method's `SENSITIVITY_GRID`, PainSeeker's is the paper's Figure 5), GridSampler, scored on the test rats
  (an analysis, not a tuning result);
- `tune`: TPE search with nested LORO (the test rat never chooses a hyper-parameter), pruning across
  inner folds, parameter importance;
- `storage`: a local journal file by default, any Optuna storage URL for workers on several machines;
- `evaluate`: LORO on the fold path of `run`, each fold computed once; `report`: CSV, figure, Markdown.
"""
from .sensitivity import SensitivityOptions, run_sensitivity
from .tune import TuneOptions, run_tune

__all__ = ["SensitivityOptions", "TuneOptions", "run_sensitivity", "run_tune"]
