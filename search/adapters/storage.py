"""Optuna storage from a SQLAlchemy URL: checked before use, SQLite tuned for several writers."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import TrialState
from sqlalchemy.engine import URL, make_url

from tunelab.search.adapters.signals import held
from tunelab.search.spec import SpecError, without_password

SQLITE_BUSY_TIMEOUT_S = 60
"""How long a SQLite writer waits for the lock before giving up."""
CONNECT_TIMEOUT_S = 10
"""How long to wait for a database server to answer."""
NEW_TRIAL_LOCK_SPACE = 0x7475
"""First key of PostgreSQL's advisory lock on creating a study's trials (the study id is the
second): a number of tunelab's own, so that it meets no other application's locks."""
COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
"""The trials that count toward a study's target: finished ones and those that will finish."""
_log = logging.getLogger(__name__)


def parse_url(url: str, what: str = "storage") -> URL:
    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise SpecError(f"malformed {what} URL '{url}' (expected e.g. {_EXAMPLE})") from None
    try:
        parsed.get_dialect()
    except (sqlalchemy.exc.NoSuchModuleError, ImportError, ModuleNotFoundError):
        raise SpecError(f"unsupported database in {what} URL '{url}'") from None
    return parsed


_EXAMPLE = "sqlite:///studies.db or postgresql://user@host:5432/db"


def shown_url(url: str) -> str:
    """A URL safe to print or log: no password (it would end up in container logs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sqlalchemy.exc.ArgumentError, ValueError):  # not a database URL (e.g. http://)
        return without_password(url)


def sqlite_path(url: URL) -> Path | None:
    """The database file of a sqlite URL (None for other databases and in-memory SQLite)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def check_database(url_text: str, what: str = "storage", existing: bool = False) -> None:
    """Fail with one line unless the database answers; creates nothing but a SQLite folder.

    `existing`: for a command that only reads, a missing SQLite file is an error (opening it
    would create an empty database where the user mistyped a path or ran in another folder).
    """
    url = parse_url(url_text, what)
    path = sqlite_path(url)
    if path is not None:
        if path.exists() and not path.is_file():
            raise SpecError(f"{what} database {path} is not a file")
        if existing and not path.exists():
            flag = "--storage" if what == "storage" else "--tracking-uri"
            raise SpecError(f"no {what} database at {path}: pass {flag}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpecError(f"cannot create the folder of {what} database {path}: {exc}") from None
        return
    connect_args = {}
    if url.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    engine = sqlalchemy.create_engine(url, connect_args=connect_args, poolclass=sqlalchemy.NullPool)
    try:
        with engine.connect():
            pass
    except Exception as exc:  # driver errors differ per database; the first line says enough
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:200]
        raise SpecError(f"cannot reach {what} database '{shown_url(url_text)}': {reason}") from None
    finally:
        engine.dispose()


def enable_wal(path: Path) -> None:
    """WAL lets readers and one writer work at once; the mode persists in the file."""
    with sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S) as connection:
        connection.execute("PRAGMA journal_mode=WAL")


def engine_kwargs(url_text: str) -> dict:
    url = make_url(url_text)
    if url.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    kwargs: dict = {"pool_pre_ping": True}
    if url.get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    return kwargs


StaleTrialCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


class TargetReached(Exception):
    """No new trial: the study's finished, running and queued trials already make its target."""


class ResilientRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage whose heartbeat survives a failed write, and that starts no trial
    beyond the study's target.

    Optuna's heartbeat thread ends for good at the first exception (a PostgreSQL restart,
    SQLite locked past its timeout); the live trial then looks dead after the grace period, and
    another worker fails it and starts a duplicate retry. A failed beat is skipped instead: the
    next one, an interval later, goes through a fresh connection (pool_pre_ping).

    And the writes of a running trial end before an interruption is raised: Ctrl-C inside a
    SQLite commit would leave the lock with a connection the process cannot use, and the
    trial's end ("interrupted") could not be stored.

    With `trial_target`, a new trial (not a queued one) is created only while the study holds
    fewer counted trials than the target, and one process at a time decides it: two workers
    ending their trials in the same instant would otherwise both see one trial missing and
    both start one (Optuna's MaxTrialsCallback counts, then asks: one more than the target).
    """

    def __init__(self, *args: Any, trial_target: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trial_target = trial_target
        """No new trial once this many are counted (COUNTED_STATES); None: no limit."""

    @held
    def _create_new_trial(
        self, study_id: int, template_trial: optuna.trial.FrozenTrial | None = None
    ) -> optuna.trial.FrozenTrial:
        if template_trial is not None or self.trial_target is None:  # queued: no new trial
            return super()._create_new_trial(study_id, template_trial)
        with self._one_creator_at_a_time(study_id):
            if self._counted_trials(study_id) >= self.trial_target:
                raise TargetReached(f"the study holds its {self.trial_target} trials")
            return super()._create_new_trial(study_id)

    @contextlib.contextmanager
    def _one_creator_at_a_time(self, study_id: int) -> Iterator[None]:
        """Held until the new trial is committed; released by the database or the kernel when
        the process dies, so a crashed worker blocks no one."""
        if self.engine.dialect.name == "postgresql":
            with self.engine.begin() as connection:  # the lock ends with this transaction
                connection.execute(
                    sqlalchemy.text("SELECT pg_advisory_xact_lock(:space, :study)"),
                    {"space": NEW_TRIAL_LOCK_SPACE, "study": study_id},
                )
                yield
            return
        path = sqlite_path(self.engine.url)
        if path is None:  # in-memory SQLite lives in one process; other databases: no lock
            yield
            return
        # a file beside the database, not the database: closing any descriptor of that file
        # would drop SQLite's own locks on it
        with open(path.with_name(path.name + ".new-trial.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _counted_trials(self, study_id: int) -> int:
        from optuna.storages._rdb import models  # Optuna's own table definitions

        trial = models.TrialModel
        with self.engine.connect() as connection:
            return connection.execute(
                sqlalchemy.select(sqlalchemy.func.count())
                .select_from(trial)
                .where(trial.study_id == study_id, trial.state.in_(COUNTED_STATES))
            ).scalar_one()

    # Optuna's cache wrapper calls the private _set_trial_param and _create_new_trial
    _set_trial_param = held(optuna.storages.RDBStorage._set_trial_param)
    set_trial_intermediate_value = held(optuna.storages.RDBStorage.set_trial_intermediate_value)
    set_trial_user_attr = held(optuna.storages.RDBStorage.set_trial_user_attr)
    set_trial_system_attr = held(optuna.storages.RDBStorage.set_trial_system_attr)

    @held
    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        """As Optuna's, except that on SQLite a queued trial is taken by one process only.

        Optuna reads a queued trial's state with SELECT ... FOR UPDATE, which SQLite ignores:
        two workers asking at once both read WAITING and both run the trial (a retry or a
        promoted continuation trained twice; the second to end gets "Cannot tell a PRUNED
        trial", optuna#4621). One conditional UPDATE lets exactly one of them have it."""
        if state != TrialState.RUNNING or self.engine.dialect.name != "sqlite":
            return super().set_trial_state_values(trial_id, state, values)
        from optuna.storages._rdb import models  # Optuna's own table definitions

        trial = models.TrialModel
        with self.engine.begin() as connection:
            taken = connection.execute(
                sqlalchemy.update(trial)
                .where(trial.trial_id == trial_id, trial.state == TrialState.WAITING)
                .values(state=TrialState.RUNNING, datetime_start=datetime.now())
            )
        return taken.rowcount == 1

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except sqlalchemy.exc.SQLAlchemyError as error:
            _log.warning("heartbeat of trial %s not recorded (%s); retrying", trial_id, error.code)


def open_storage(
    url_text: str,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    on_stale: StaleTrialCallback | None = None,
    trial_target: int | None = None,
) -> optuna.storages.RDBStorage:
    """An RDBStorage; with a heartbeat, a trial whose process died is failed after the grace
    period and handed to `on_stale` (e.g. a retry that resumes it); with `trial_target`, no
    new trial beyond it (`TargetReached`)."""
    path = sqlite_path(make_url(url_text))
    if path is not None:
        enable_wal(path)
    heartbeat = {}
    if heartbeat_interval:
        heartbeat = {
            "heartbeat_interval": heartbeat_interval,
            "grace_period": grace_period,
            "heartbeat_stale_trial_callback": on_stale,
        }
    return ResilientRDBStorage(
        url_text, engine_kwargs=engine_kwargs(url_text), trial_target=trial_target, **heartbeat
    )
