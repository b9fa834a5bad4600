"""Adapters to the outside stores: Optuna storage (`storage`) and MLflow tracking (`tracking`)."""
