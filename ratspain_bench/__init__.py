"""ratspain_bench: LORO benchmark for rat pain assessment from facial expressions.

The Python API (`ratspain_bench.api`) is available at the package root, loaded on first use so that
`import ratspain_bench` stays light:

    import ratspain_bench as rb
    r = rb.run(["lbp-r1p8-8x8"], data=None)
    print(r.table)
"""
__version__ = "0.2.0"

API = ("load_dataset", "list_methods", "list_protocols", "get_method", "suites", "run", "score", "compare", "leaderboard", "sensitivity", "tune",
       "validate", "check_data", "imbalance", "synth", "contact_sheet", "train", "load_model", "frames", "groups",
       "detector_train", "detector_predict", "Results")
__all__ = ["__version__", *API]


def __getattr__(name: str):
    if name in API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'ratspain_bench' has no attribute {name!r}")
