"""Hand-crafted features shared across methods and folds (cached per image content)."""
