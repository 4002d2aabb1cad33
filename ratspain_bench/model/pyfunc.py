"""The MLflow face of a trained model: `mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"path": [...]}))`.

The pyfunc wrapper holds no state of its own: it loads the `ratspain` artifact with `saved.open_folder`,
so the pyfunc, `rb.load_model` and `ratspain-bench predict` run the same code and give the same numbers.
"""
from __future__ import annotations

import os
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import mlflow.pyfunc
import pandas as pd

from .saved import STATE, open_folder

# What a saved model needs at load time (pinned to this installation's versions).
REQUIREMENTS = ("ratspain_bench", "numpy", "pandas", "pillow", "scikit-learn", "scikit-image", "joblib", "torch", "torchvision",
                "timm", "safetensors", "mlflow")


class RatsPainModel(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with a `path` column (image files); output: the columns of `TrainedModel.predict`."""

    def load_context(self, context):
        self.model = open_folder(Path(context.artifacts[STATE]))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        return self.model.predict(model_input, batch_size=int((params or {}).get("batch_size") or 0) or None)


def requirements() -> list[str]:
    out = []
    for name in REQUIREMENTS:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return out


def signature():
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    outputs = Schema([ColSpec("string", "image"), ColSpec("double", "pain_probability", required=False),
                      ColSpec("long", "pain", required=False), ColSpec("string", "error"),
                      ColSpec("string", "warning", required=False)])
    return ModelSignature(inputs=Schema([ColSpec("string", "path")]), outputs=outputs,
                          params=ParamSchema([ParamSpec("batch_size", "long", 0)]))


def save_pyfunc(out: Path, state: Path, metadata: dict) -> None:
    """An MLflow pyfunc model in `out` (which must not exist) around the state folder `state`. The model is given as
    code (`mlflow_model.py`, MLflow's models-from-code): the folder holds no pickle."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # it copies `state` as a download
    with warnings.catch_warnings():
        # The input is image paths: an input example would name a file of this machine, meaningless elsewhere; the
        # signature (`signature`) says what the model takes.
        warnings.filterwarnings("ignore", message=".*An input example was not provided", category=UserWarning)
        mlflow.pyfunc.save_model(path=str(out), python_model=str(Path(__file__).with_name("mlflow_model.py")),
                                 artifacts={STATE: str(state)}, signature=signature(), pip_requirements=requirements(),
                                 metadata=metadata)
