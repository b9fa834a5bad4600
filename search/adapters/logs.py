"""The libraries' own log lines: off behind tunelab's output, on with `--verbose`.

MLflow logs its store migrations ("Creating initial MLflow database tables") and Optuna one
INFO line per trial with every parameter; tunelab's progress display and summary say the same
for a user. Their warnings still show.
"""

from __future__ import annotations

import logging
import os
import sys

MLFLOW_LEVEL_ENV = "MLFLOW_LOGGING_LEVEL"
"""MLflow's own setting of its loggers' level, read when mlflow is imported."""
LIBRARY_LOGGERS = ("mlflow", "alembic")
"""Loggers whose INFO lines only --verbose shows (alembic runs MLflow's migrations)."""


MLFLOW_PROGRESS_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
"""MLflow's switch of its artifact progress bars (it draws one on stderr when it downloads the
front's table to add to it)."""


def quiet_env() -> dict[str, str]:
    """Environment that keeps MLflow's INFO lines and progress bars off in this process and
    its children (its workers, `mlflow server`), unless the user chose them."""
    defaults = {MLFLOW_LEVEL_ENV: "WARNING", MLFLOW_PROGRESS_ENV: "false"}
    return {name: value for name, value in defaults.items() if name not in os.environ}


def library_logs(verbose: bool) -> None:
    """Show the libraries' INFO lines (verbose) or only their warnings."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)
    if verbose:  # mlflow sets its level when imported: import it first, then lower the level
        import mlflow  # noqa: F401
    level = logging.INFO if verbose else logging.WARNING
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(level)


def say(text: str, quiet: bool = False) -> None:
    """A progress line on stderr (stdout carries results); no URL's password in it."""
    from tunelab.search.spec import mask_urls

    if not quiet:
        print(mask_urls(text), file=sys.stderr, flush=True)
