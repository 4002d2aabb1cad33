"""The model an MLflow pyfunc folder loads (MLflow's models-from-code): `save_pyfunc` gives MLflow this file, which
it copies into the model folder and runs at load time, so a saved model holds no pickle of the project's code."""
import mlflow

from ratspain_bench.model.pyfunc import RatsPainModel

mlflow.models.set_model(RatsPainModel())
