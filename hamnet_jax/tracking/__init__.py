"""Experiment tracking: MLflow runs for jobs, studies and pipelines, and the model registry."""
