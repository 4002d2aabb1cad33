"""Evaluation: the fold path (`fold`), what identifies a result (`identity`), the predictions rules
(`predictions`), the MLflow run record (`record`), method configuration (`configure`), the sandbox for
outside code (`sandbox`, `worker`) and the LORO runner (`runner`)."""
