"""Methods: the interface (`base`), the registry, and one file per method family."""
from .base import Context, Method, Predictions, TestSet, TrainSet
from .registry import MethodSpec, default_registry, get_method

__all__ = ["Context", "Method", "MethodSpec", "Predictions", "TestSet", "TrainSet", "default_registry", "get_method"]
