"""ratspain_bench: LORO benchmark for rat pain assessment from facial expressions."""
__version__ = "0.1.0"
