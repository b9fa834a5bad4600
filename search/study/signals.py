"""SIGTERM as an interruption: `docker stop` and a scheduler's stop end a trial like Ctrl-C.

The first SIGINT or SIGTERM interrupts; the ones after it are ignored, so that they cannot
break the clean-up the first one started (closing MLflow runs, recording the trial as failed).
A terminal's Ctrl-C reaches every process of its group, and `run --workers` forwards the stop
to its workers as well: each worker would otherwise be interrupted twice.
"""

from __future__ import annotations

import logging
import signal

CLEANUP_LOGGERS = ("sqlalchemy.pool", "mlflow.store.db.utils")
"""Loggers of clean-up errors an interruption causes, printed with a traceback by the library
that catches them: a signal inside a database read leaves a cursor that cannot close ("Error
closing cursor"); MLflow's SQLite store, closing runs while another worker writes, logs "database
is locked" before it retries or raises. The process is ending; its one line says why."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (e.g. `docker stop`): handled like Ctrl-C, exit code 143."""


def _interrupt(signum: int, frame: object) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for name in CLEANUP_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def interrupt_once() -> None:
    """From now on, SIGTERM raises Terminated (and SIGINT KeyboardInterrupt) in the main
    thread, once."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
