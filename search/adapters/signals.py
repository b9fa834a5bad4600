"""SIGTERM as an interruption: `docker stop` and a scheduler's stop end a trial like Ctrl-C.

The first SIGINT or SIGTERM interrupts; the ones after it are ignored, so that they cannot
break the clean-up the first one started (closing MLflow runs, recording the trial as failed).
A terminal's Ctrl-C reaches every process of its group, and `run --workers` forwards the stop
to its workers as well: each worker would otherwise be interrupted twice.

A signal that arrives during a database call is held until the call returns
(`interruptions_held`): raised inside a SQLite commit, it leaves the write lock with a connection
the process can no longer use, and the clean-up's own writes then fail "database is locked".
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

CLEANUP_LOGGERS = ("sqlalchemy.pool", "mlflow.store.db.utils")
"""Loggers of clean-up errors an interruption causes, printed with a traceback by the library
that catches them: a signal inside a database read leaves a cursor that cannot close ("Error
closing cursor"); MLflow's SQLite store, closing runs while another worker writes, logs "database
is locked" before it retries or raises. The process is ending; its one line says why."""

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM (e.g. `docker stop`): handled like Ctrl-C, exit code 143."""


def _interrupt(signum: int, frame: object) -> None:
    for stop in STOP_SIGNALS:
        signal.signal(stop, signal.SIG_IGN)
    for name in CLEANUP_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def interrupt_once() -> None:
    """From now on, SIGTERM raises Terminated (and SIGINT KeyboardInterrupt) in the main
    thread, once."""
    for stop in STOP_SIGNALS:
        signal.signal(stop, _interrupt)


@contextmanager
def interruptions_held() -> Iterator[None]:
    """Run the body to its end, then raise the interruption that arrived meanwhile, if any.

    Only where `interrupt_once` is in force and not yet spent, and in the main thread (the only
    one Python runs signal handlers in); elsewhere the body runs as it is."""
    armed = threading.current_thread() is threading.main_thread() and all(
        signal.getsignal(stop) is _interrupt for stop in STOP_SIGNALS
    )
    if not armed:
        yield
        return
    received: list[int] = []
    for stop in STOP_SIGNALS:
        signal.signal(stop, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        if received:
            _interrupt(received[0], None)
        for stop in STOP_SIGNALS:
            signal.signal(stop, _interrupt)


def held(call: Callable[P, R]) -> Callable[P, R]:
    """`call`, with interruptions held until it returns."""

    @functools.wraps(call)
    def run_held(*args: P.args, **kwargs: P.kwargs) -> R:
        with interruptions_held():
            return call(*args, **kwargs)

    return run_held
