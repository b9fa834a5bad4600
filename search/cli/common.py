"""What every command shares: exit codes, one-line messages, the way a command is interrupted."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer

from tunelab.objectives.interruptions import interruption_in
from tunelab.search.adapters.signals import Terminated
from tunelab.search.spec import DEFAULT_STORAGE, STORAGE_ENV, mask_urls

EXIT_GAVE_UP = 1
"""A worker stopped after several trials in a row failed (not the input's fault)."""
EXIT_USAGE = 2
"""Bad input: one line on stderr, nothing written."""
EXIT_DIVERGED = 3
"""The search diverged: no configuration completed and every one that ended stopped on a
non-finite loss or metric (the summary's last line says so). Distinct from 1 and 2 because
neither a retry of the same command nor other input syntax fixes it: the model, its loss or
the searched ranges must change."""
EXIT_SIGINT = 130
"""Ctrl-C."""
EXIT_SIGTERM = 143
"""SIGTERM (docker stop, a Slurm time limit, a pod's termination)."""
T = TypeVar("T")

StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="Optuna storage URL.",
        show_default=f"${STORAGE_ENV} or {DEFAULT_STORAGE}",
    ),
]
"""The `--storage` option of the commands that read an existing study."""


def error(message: str) -> None:
    """The one line of a command that failed; a URL in it is shown without its password."""
    print(f"tunelab: error: {mask_urls(message)}", file=sys.stderr)


def interruptible(body: Callable[[], T]) -> T:
    """Run a command body; Ctrl-C exits 130 and SIGTERM 143, each with one line."""
    try:
        return body()
    except Terminated:
        error("terminated (SIGTERM); the running trial is recorded as failed")
        raise typer.Exit(EXIT_SIGTERM) from None
    except KeyboardInterrupt:
        error("interrupted; the running trial is recorded as failed")
        raise typer.Exit(EXIT_SIGINT) from None


class NoInterruptTraceback(logging.Filter):
    """Optuna logs a failed trial with its traceback; for Ctrl-C / SIGTERM that is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and interruption_in(record.exc_info[1]) is not None:
            record.exc_info, record.exc_text = None, None
        return True
