"""SIGTERM as an interruption: `docker stop` and a scheduler's stop end a trial like Ctrl-C.

The first SIGINT or SIGTERM interrupts; the ones after it are ignored, so that they cannot
break the clean-up the first one started (closing MLflow runs, recording the trial as failed).
A terminal's Ctrl-C reaches every process of its group, and `run --workers` forwards the stop
to its workers as well: each worker would otherwise be interrupted twice.

A signal that arrives during a database call is held until the call returns
(`interruptions_held`): raised inside a SQLite commit, it leaves the write lock with a connection
the process can no longer use, and the clean-up's own writes then fail "database is locked".

A worker takes SIGTERM as a request to stop at the running trial's next rung (`stop_at_rung`):
the trial then ends with the checkpoint of that rung, so a retry loses nothing (a batch
scheduler's time limit, `--signal=B:TERM@120`, a Kubernetes pod's termination). The stop comes
at the latest STOP_GRACE_S later, or at a second SIGTERM, as an interruption; Ctrl-C (SIGINT)
interrupts at once.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
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
HELD_SIGNALS = (*STOP_SIGNALS, signal.SIGALRM)
STOP_GRACE_S = 30
"""After a SIGTERM that asks for a stop at the next rung, the interruption comes anyway after
this many seconds (a rung is a few seconds; a container's grace period is 30 s by default)."""
STOP_CHECK_S = 0.25
"""How often a waiting process looks for a requested stop."""
_STOP_REQUESTED = threading.Event()
"""Set by a SIGTERM asking for a stop at the next rung (a signal is process state)."""
_ALARM_BEFORE: list = []
"""SIGALRM's handler before the stop's alarm took it (put back once the stop came)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (e.g. `docker stop`): handled like Ctrl-C, exit code 143."""


def _interrupt(signum: int, frame: object) -> None:
    _STOP_REQUESTED.clear()  # the stop comes now: nothing is left to ask for
    for stop in STOP_SIGNALS:
        signal.signal(stop, signal.SIG_IGN)
    if signal.getsignal(signal.SIGALRM) is _interrupt_by_alarm:  # the stop comes now
        signal.alarm(0)
        signal.signal(signal.SIGALRM, _ALARM_BEFORE.pop() if _ALARM_BEFORE else signal.SIG_DFL)
    for name in CLEANUP_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _stop_at_rung(signum: int, frame: object) -> None:
    _STOP_REQUESTED.set()
    signal.signal(signal.SIGTERM, _interrupt)  # a second SIGTERM: at once
    _ALARM_BEFORE[:] = [signal.signal(signal.SIGALRM, _interrupt_by_alarm)]
    signal.alarm(STOP_GRACE_S)


def _interrupt_by_alarm(signum: int, frame: object) -> None:
    _interrupt(signal.SIGTERM, frame)


def interrupt_once(stop_at_rung: bool = False) -> None:
    """From now on, SIGTERM raises Terminated (and SIGINT KeyboardInterrupt) in the main
    thread, once; with `stop_at_rung`, a SIGTERM first asks for a stop at the next rung
    (`stop_requested`), and raises only after STOP_GRACE_S or at a second SIGTERM."""
    _STOP_REQUESTED.clear()
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _stop_at_rung if stop_at_rung else _interrupt)


def stop_requested() -> bool:
    """Whether a SIGTERM asked this process to stop at the next rung."""
    return _STOP_REQUESTED.is_set()


def stop_if_requested() -> None:
    """Raise the requested stop (Terminated), once, as a SIGTERM's interruption."""
    if _STOP_REQUESTED.is_set() and signal.getsignal(signal.SIGINT) is _interrupt:
        _interrupt(signal.SIGTERM, None)


def sleep_unless_stopped(seconds: float) -> None:
    """Wait, and stop at once (within STOP_CHECK_S) when a SIGTERM asks for a stop meanwhile."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(left, STOP_CHECK_S))
        stop_if_requested()


@contextmanager
def interruptions_held() -> Iterator[None]:
    """Run the body to its end, then raise the interruption that arrived meanwhile, if any.

    Only where `interrupt_once` is in force and not yet spent, and in the main thread (the only
    one Python runs signal handlers in); elsewhere the body runs as it is."""
    ours = (_interrupt, _stop_at_rung, _interrupt_by_alarm)
    armed = threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGINT) is _interrupt
    )
    if not armed:
        yield
        return
    handlers = {s: signal.getsignal(s) for s in HELD_SIGNALS}
    received: list[int] = []
    for held_signal, handler in handlers.items():
        if handler in ours:
            signal.signal(held_signal, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for held_signal, handler in handlers.items():
            if handler in ours:
                signal.signal(held_signal, handler)
        for signum in received:  # as if they arrived now, in order
            handler = signal.getsignal(signum)
            if callable(handler):
                handler(signum, None)


def held(call: Callable[P, R]) -> Callable[P, R]:
    """`call`, with interruptions held until it returns."""

    @functools.wraps(call)
    def run_held(*args: P.args, **kwargs: P.kwargs) -> R:
        with interruptions_held():
            return call(*args, **kwargs)

    return run_held
