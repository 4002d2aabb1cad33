"""Data layer: read any supported dataset form into one validated table, check it, cache decoded images."""
from .dataset import Dataset, Problem, load_dataset, read_dataset

__all__ = ["Dataset", "Problem", "load_dataset", "read_dataset"]
