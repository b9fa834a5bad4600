"""The study: its options (`StudySpec`), the command line, running a study, the adapters to
Optuna storage and MLflow, and the analysis commands, each in a sub-package of its own."""

from tunelab.search.spec import SpecError, StudySpec

__all__ = ["SpecError", "StudySpec"]
