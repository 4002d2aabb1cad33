"""A method's registered configuration: what `run` gives it for a profile with no overrides.

The leaderboard ranks only rows of this configuration, so no configuration is chosen on the test rats;
`--set`/`--weights` variants and methods no longer registered are exploratory rows.
"""
from __future__ import annotations


def registered_config_hash(method: str, profile: str) -> str:
    """`config_hash` of `method`'s configuration for `profile` with no overrides, as `run` computes it
    (`evaluation.configure.registered_hash`, cached on disk by `run`).

    Raises InputError when the method is not registered or cannot be configured."""
    from ..evaluation.configure import registered_hash
    from ..methods.registry import get_method

    return registered_hash(get_method(method), profile or None)
