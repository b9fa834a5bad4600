"""The study: its options (`StudySpec`), the command line, running a study, the adapters to
Optuna storage and MLflow, and the analysis commands, each in a sub-package of its own."""

if not __name__.startswith("tunelab."):  # the repository folder, imported by its bare name
    raise ImportError(
        f"import tunelab.{__name__}, not {__name__}: the folder installs as tunelab.{__name__} "
        "(a second name would load every module twice)"
    )

from tunelab.search.spec import SpecError, StudySpec

__all__ = ["SpecError", "StudySpec"]
