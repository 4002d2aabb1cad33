"""From benchmark to tool: a method trained on every animal, saved as an MLflow pyfunc model with its model
card (`train`), and scoring new face images with it (`saved.load_model(...).predict`)."""
