"""Storage errors that pass: a database server restarting. Retried with backoff."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import optuna
import sqlalchemy

_log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_ERRORS = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)
"""Storage errors that a restart of the database server causes, and that pass."""
TRANSIENT_GIVE_UP_S = 300.0
"""How long a worker retries a storage that keeps failing before it stops."""


def is_transient(error: BaseException) -> bool:
    """Whether the error is one that a database restart causes: raised by SQLAlchemy, or by
    Optuna's storage, which wraps it in a StorageInternalError."""
    if isinstance(error, optuna.exceptions.StorageInternalError):
        error = error.__cause__
    return isinstance(error, TRANSIENT_ERRORS)


class Backoff:
    """Waits between attempts at a failing storage: 1 s, doubling to 30 s, for at most
    TRANSIENT_GIVE_UP_S in a row (then the error stands)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.delay, self.failing_since = 1.0, None

    def wait(self, error: BaseException) -> None:
        now = time.monotonic()
        self.failing_since = self.failing_since or now
        if now - self.failing_since > TRANSIENT_GIVE_UP_S:
            raise error
        _log.warning(
            "storage unavailable (%s); retrying in %.0f s", type(error).__name__, self.delay
        )
        time.sleep(self.delay)
        self.delay = min(30.0, self.delay * 2)


def retrying(call: Callable[[], T]) -> T:
    """call(), retried with backoff while it fails with a transient storage error."""
    backoff = Backoff()
    while True:
        try:
            return call()
        except Exception as error:
            if not is_transient(error):
                raise
            backoff.wait(error)
