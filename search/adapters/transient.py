"""Errors that pass: a database or a tracking server restarting, a connection cut. Retried.

A worker meets them as errors of SQLAlchemy (Optuna's storage wraps them in a
StorageInternalError), of MLflow (which wraps its own database's errors, and gives up on an
HTTP server after its own retries) or of the network. Each is retried with backoff and jitter
for up to TRANSIENT_GIVE_UP_S; past that the error stands. `StorageHealth` remembers since when
the database has answered: a worker decides that another worker's trial is dead only after it
has itself reached the database for a whole grace period (after an outage, every heartbeat is
late, and none of those trials is dead).
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy

_log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_ERRORS = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection came free in time
    # a session used again after its connection was lost: Optuna's _get_trials falls back to
    # a second query in the same session, and its commit then fails with this
    sqlalchemy.exc.PendingRollbackError,
    ConnectionError,
    TimeoutError,
)
"""Errors a restart of a server, a cut connection or a timeout causes, and that pass."""
MLFLOW_TRANSIENT_CODES = frozenset({"TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR"})
"""MLflow error codes of a store that could not be reached (its database's OperationalError
becomes TEMPORARILY_UNAVAILABLE; a server that is down, after the client's own retries, an
error without a code of its own)."""
TRANSIENT_GIVE_UP_S = 300.0
"""How long a worker retries a storage that keeps failing before it stops."""
FIRST_WAIT_S, LONGEST_WAIT_S = 0.5, 30.0
"""Backoff: the first wait, doubling up to the longest, each with +-25% jitter (many workers
that lost one database do not come back at the same instant)."""


def is_transient(error: BaseException) -> bool:
    """Whether the error is one that passes: raised by SQLAlchemy or the network, or wrapped by
    Optuna's storage or MLflow around one."""
    seen: set[int] = set()
    cursor: BaseException | None = error
    while cursor is not None and id(cursor) not in seen:
        if isinstance(cursor, TRANSIENT_ERRORS):
            return True
        # the server ended the session (e.g. our own idle_in_transaction_session_timeout, an
        # InternalError): a new connection goes on, whatever the error's class
        if isinstance(cursor, sqlalchemy.exc.DBAPIError) and cursor.connection_invalidated:
            return True
        if _is_mlflow_unavailable(cursor):
            return True
        seen.add(id(cursor))
        cursor = cursor.__cause__  # Optuna's StorageInternalError, MLflow's own: the cause
    return False


SERVER_DATABASE_ERRORS = ("sqlalche.me/e/21/3o7r", "sqlalche.me/e/21/e3q8")
"""SQLAlchemy's links for a pool timeout and an OperationalError, which an MLflow server quotes
when its own database is out of connections or down (it answers BAD_REQUEST)."""


def _is_mlflow_unavailable(error: BaseException) -> bool:
    code = getattr(error, "error_code", None)
    if type(error).__name__ not in ("MlflowException", "RestException") or code is None:
        return False
    if code == "TEMPORARILY_UNAVAILABLE":
        return True
    if any(link in str(error) for link in SERVER_DATABASE_ERRORS):
        return True
    # the REST client gives up on a server that does not answer with this wording
    text = str(error)
    return code in MLFLOW_TRANSIENT_CODES and (
        "Max retries exceeded" in text or "Connection" in text or "timed out" in text
    )


class StorageHealth:
    """Since when the database has answered without an error (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._healthy_since = time.monotonic()  # a process starting now saw no outage before

    def failed(self) -> None:
        """A call failed transiently: the healthy time starts again from the next success."""
        with self._lock:
            self._healthy_since = float("inf")

    def succeeded(self) -> None:
        """A call went through."""
        with self._lock:
            if self._healthy_since == float("inf"):
                self._healthy_since = time.monotonic()

    def healthy_for(self) -> float:
        """Seconds since the database last came back (0 while it is down)."""
        with self._lock:
            return max(0.0, time.monotonic() - self._healthy_since)


class Backoff:
    """Waits between attempts at a failing server: FIRST_WAIT_S, doubling to LONGEST_WAIT_S,
    with jitter, for at most TRANSIENT_GIVE_UP_S in a row (then the error stands)."""

    def __init__(self, give_up_s: float = TRANSIENT_GIVE_UP_S) -> None:
        self.give_up_s = give_up_s
        self.reset()

    def reset(self) -> None:
        self.delay, self.failing_since = FIRST_WAIT_S, None

    def wait(self, error: BaseException) -> None:
        now = time.monotonic()
        self.failing_since = self.failing_since or now
        if now - self.failing_since > self.give_up_s:
            raise error
        if self.delay == FIRST_WAIT_S:  # one line per outage, not one per attempt
            _log.warning("%s unavailable (%s); retrying with backoff", _what(error), _why(error))
        time.sleep(self.delay * random.uniform(0.75, 1.25))
        self.delay = min(LONGEST_WAIT_S, self.delay * 2)


def _why(error: BaseException) -> str:
    """The innermost cause's class and first line (a pool timeout, a refused connection),
    without a URL: a driver's message may quote the server, never the password."""
    cause = error
    while cause.__cause__ is not None and cause.__cause__ is not cause:
        cause = cause.__cause__
    text = (str(cause).strip().splitlines() or [""])[0]
    text = re.sub(r"\w+://\S+", "<url>", text)[:160]
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


def _what(error: BaseException) -> str:
    return "tracking server" if type(error).__name__ == "MlflowException" else "storage"


def retrying(
    call: Callable[[], T], health: StorageHealth | None = None, give_up_s: float | None = None
) -> T:
    """call(), retried with backoff while it fails with a transient error."""
    backoff = Backoff() if give_up_s is None else Backoff(give_up_s)
    while True:
        try:
            result = call()
        except Exception as error:
            if not is_transient(error):
                raise
            if health is not None:
                health.failed()
            backoff.wait(error)
            continue
        if health is not None:
            health.succeeded()
        return result
