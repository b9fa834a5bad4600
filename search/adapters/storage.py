"""Optuna storage from a SQLAlchemy URL: checked before use, SQLite tuned for several writers."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy
import sqlalchemy.orm
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo  # the cache, extended
from optuna.trial import TrialState
from sqlalchemy.engine import URL, make_url

from tunelab.search.adapters.signals import held, interruptions_held
from tunelab.search.adapters.transient import StorageHealth, retrying
from tunelab.search.spec import SpecError, without_password

SQLITE_BUSY_TIMEOUT_S = 60
"""How long a SQLite writer waits for the lock before giving up."""
CONNECT_TIMEOUT_S = 10
"""How long to wait for a database server to answer."""
DECISION_LOCK_SPACE = 0x7475
"""First key of PostgreSQL's advisory lock of `one_at_a_time` (the study id is the second): a
number of tunelab's own, so that it meets no other application's locks."""
COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
"""The trials that count toward a study's target: finished ones and those that will finish."""
_log = logging.getLogger(__name__)
R = TypeVar("R")


def parse_url(url: str, what: str = "storage") -> URL:
    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise SpecError(
            f"malformed {what} URL '{without_password(url)}' (expected e.g. {_EXAMPLE})"
        ) from None
    try:
        parsed.get_dialect()
    except (sqlalchemy.exc.NoSuchModuleError, ImportError, ModuleNotFoundError):
        raise SpecError(f"unsupported database in {what} URL '{shown_url(url)}'") from None
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
    """Fail with one line unless the database answers; creates nothing (a SQLite file and its
    folder come when the store is opened, after every check).

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
        _check_creatable(path.parent, f"the folder of {what} database {path}")
        if path.exists():
            _check_sqlite_file(path, what)
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


def _check_creatable(folder: Path, what: str) -> None:
    """Fail with one line unless `folder` exists or can be created: its nearest existing
    ancestor is a folder this process may write in."""
    ancestor = folder
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise SpecError(f"cannot create {what}: {ancestor} is not a folder")
    if ancestor != folder and not os.access(ancestor, os.W_OK | os.X_OK):
        raise SpecError(f"cannot create {what}: {ancestor} is not writable")


def _check_sqlite_file(path: Path, what: str) -> None:
    """SpecError unless the file is a SQLite database (or empty: a new one)."""
    try:
        # read-write, never creating: a WAL database left by a killed process is recovered
        # on opening, which a read-only connection cannot do ("attempt to write a readonly
        # database")
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=rw", uri=True)) as db:
            db.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise SpecError(f"{what} database {path} is not a SQLite database ({exc})") from None


def enable_wal(path: Path) -> None:
    """WAL lets readers and one writer work at once; the mode persists in the file."""
    with sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S) as connection:
        connection.execute("PRAGMA journal_mode=WAL")


KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}
"""libpq's TCP keepalives: a server that vanished (no RST) is noticed in about 25 s."""
TCP_USER_TIMEOUT_MS = 30_000
"""A write to a server that stopped acknowledging fails after this long, not the kernel's 15 min."""
SESSION_TIMEOUTS = {"idle_in_transaction_session_timeout": "30s", "lock_timeout": "20s"}
"""Server-side bounds on every tunelab session: a worker that vanishes inside a transaction (its
lock or row lock held, its socket half-open) loses it after 30 s, and a worker waiting on a lock
gives up after 20 s and retries with backoff, instead of both waiting out TCP's two hours."""
LOCK_WAIT_S = 20.0
"""How long a SQLite worker waits for the study's decision lock before it retries."""


def engine_kwargs(url_text: str) -> dict:
    url = make_url(url_text)
    if url.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    # One connection per worker, and a second one only for a moment when its heartbeat thread
    # writes while the worker does (an overflow connection, closed once returned): a database
    # of 100 connections serves about 90 workers, not 20 (each held 4 on SQLAlchemy's default
    # pool of 5 + 10 overflow).
    kwargs: dict = {"pool_pre_ping": True, "pool_size": 1, "max_overflow": 1}
    if url.get_backend_name() == "postgresql":
        options = " ".join(f"-c {name}={value}" for name, value in SESSION_TIMEOUTS.items())
        kwargs["connect_args"] = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
            "options": options,
            **KEEPALIVE,
        }
    return kwargs


Guard = Callable[[sqlalchemy.orm.Session, int], None]
"""A check inside a trial's creating transaction: (session, study id); raises to refuse."""


def _no_guard(session: sqlalchemy.orm.Session, study_id: int) -> None:
    return None


class TargetReached(Exception):
    """No new trial: the study's finished, running and queued trials already make its target."""


def _resilient(method: Callable[..., R]) -> Callable[..., R]:
    """A storage method that outlives an outage: each attempt runs with interruptions held (see
    signals.py), and a transient error is retried with backoff, the waits interruptible.
    Only for idempotent writes and for reads: a retried write that had committed before its
    connection was cut must be harmless done twice."""

    @functools.wraps(method)
    def call(self: ResilientRDBStorage, *args: Any, **kwargs: Any) -> R:
        return retrying(lambda: held(method)(self, *args, **kwargs), self.health)

    return call


class ResilientRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage made for many workers and faults.

    - Reads and idempotent writes outlive a database outage (`_resilient`); the heartbeat skips
      a failed beat and tries again an interval later (Optuna's thread ended at the first error,
      and every live trial then looked dead); `health` remembers since when the database answers.
    - Writes end before an interruption is raised (signals.py): Ctrl-C inside a SQLite commit
      would leave the lock with a connection the process cannot use.
    - A trial changes state only from the state it was read in, on SQLite too, where Optuna's
      SELECT ... FOR UPDATE is a plain read: a stale-trial FAIL and the owner's COMPLETE cannot
      both succeed, and a queued trial is taken by one worker only.
    - A trial is born owned and alive: `take_new` and `take_waiting` write the owner's
      attributes and the first heartbeat in the transaction that makes the trial RUNNING, so
      no crash or signal leaves a RUNNING trial that nobody can tell is dead.
    - With `trial_target`, a new trial is created only while the study holds fewer counted
      trials than the target, decided inside the creating transaction by one process at a time
      (`create_guarded`): on one connection, so a worker needs no second one.
    """

    def __init__(self, *args: Any, trial_target: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trial_target = trial_target
        """No new trial once this many are counted (COUNTED_STATES); None: no limit."""
        self.health = StorageHealth()
        """Since when the database has answered."""
        self.taken: list[int] = []
        """Trials this process took (made RUNNING); the worker clears it once it owns them, so
        an interruption raised as a take returned still finds the trial it took."""
        self._guards = threading.local()
        """The guard of the trial this thread is creating (create_guarded)."""

    # -- taking a trial ------------------------------------------------------------------

    def take_new(self, study: optuna.Study, user_attrs: Mapping[str, Any]) -> int:
        """A new RUNNING trial of `study` with `user_attrs` and its first heartbeat, all in one
        transaction (TargetReached when the study holds its target). Returns its id."""
        template = optuna.trial.FrozenTrial(
            number=-1,
            state=TrialState.RUNNING,
            value=None,
            datetime_start=datetime.now(),
            datetime_complete=None,
            params={},
            distributions={},
            user_attrs=dict(user_attrs),
            system_attrs={},
            intermediate_values={},
            trial_id=-1,
        )
        guard = None if self.trial_target is None else self._counted_at_most(self.trial_target)
        with interruptions_held():
            trial_id = self.create_guarded(study, template, guard or _no_guard)
            self.taken.append(trial_id)
        return trial_id

    def take_waiting(self, trial_id: int, user_attrs: Mapping[str, Any]) -> bool:
        """Make a queued trial RUNNING with `user_attrs` and its first heartbeat, in one
        transaction; False when another process took or ended it first."""
        from optuna.storages._rdb import models  # Optuna's own table definitions

        trial = models.TrialModel
        with interruptions_held(), self.engine.begin() as connection:
            taken = connection.execute(
                sqlalchemy.update(trial)
                .where(trial.trial_id == trial_id, trial.state == TrialState.WAITING)
                .values(state=TrialState.RUNNING, datetime_start=datetime.now())
            )
            if taken.rowcount != 1:
                return False
            _write_attrs(connection, trial_id, user_attrs)
            if self.heartbeat_interval:
                self._first_beat(connection, trial_id)
            self.taken.append(trial_id)
        return True

    def _first_beat(self, connection: sqlalchemy.Connection, trial_id: int) -> None:
        from optuna.storages._rdb import models

        beat = models.TrialHeartbeatModel
        connection.execute(sqlalchemy.delete(beat).where(beat.trial_id == trial_id))
        connection.execute(
            sqlalchemy.insert(beat).values(trial_id=trial_id, heartbeat=sqlalchemy.func.now())
        )

    def _create_new_trial(
        self, study_id: int, template_trial: optuna.trial.FrozenTrial | None = None
    ) -> optuna.trial.FrozenTrial:
        return held(super()._create_new_trial)(study_id, template_trial)

    def _get_prepared_new_trial(self, study_id, template_trial, session):
        """Optuna's, inside the creating transaction, which holds the study's row lock (its
        SELECT ... FOR UPDATE: one creator at a time on PostgreSQL; on SQLite a lock file does
        that, see `create_guarded`): first the caller's guard, which may refuse the trial; then
        a RUNNING trial gets its first heartbeat in the same transaction."""
        from optuna.storages._rdb import models

        guard = getattr(self._guards, "current", None)
        if guard is not None:
            guard(session, study_id)
        trial = super()._get_prepared_new_trial(study_id, template_trial, session)
        if self.heartbeat_interval and trial.state == TrialState.RUNNING:
            session.add(models.TrialHeartbeatModel(trial_id=trial.trial_id))
        return trial

    def create_guarded(
        self,
        study: optuna.Study,
        template: optuna.trial.FrozenTrial,
        guard: Guard,
    ) -> int:
        """A trial of `study` from `template`, created only if `guard(session, study_id)` returns
        inside
        the transaction that creates it (it raises to refuse: e.g. TargetReached): one process
        at a time decides, on one connection, and a process that dies while deciding leaves
        nothing written and the lock released. Returns the new trial's id."""
        with interruptions_held(), self._sqlite_lock(study._study_id):
            self._guards.current = guard
            try:
                return study._storage.create_new_trial(study._study_id, template_trial=template)
            finally:
                self._guards.current = None

    def _counted_at_most(self, below: int) -> Guard:
        """A guard: refuse a new trial once the study counts `below` trials (COUNTED_STATES)."""
        from optuna.storages._rdb import models

        def guard(session: sqlalchemy.orm.Session, study_id: int) -> None:
            trial = models.TrialModel
            count = session.execute(
                sqlalchemy.select(sqlalchemy.func.count())
                .select_from(trial)
                .where(trial.study_id == study_id, trial.state.in_(COUNTED_STATES))
            ).scalar_one()
            if count >= below:
                raise TargetReached(f"the study holds its {below} trials")

        return guard

    @contextlib.contextmanager
    def one_at_a_time(self, study_id: int) -> Iterator[None]:
        """Held by one process at a time per study around a rare decision of several statements
        (on PostgreSQL an advisory lock on a connection of its own, released with its
        transaction; on SQLite the lock file), released when the process dies. The frequent
        decisions (a new trial, a retry) need no second connection: `create_guarded`."""
        if self.engine.dialect.name == "postgresql":
            with self.engine.begin() as connection:
                connection.execute(
                    sqlalchemy.text("SELECT pg_advisory_xact_lock(:space, :study)"),
                    {"space": DECISION_LOCK_SPACE, "study": study_id},
                )
                yield
            return
        with self._sqlite_lock(study_id):
            yield

    @contextlib.contextmanager
    def _sqlite_lock(self, study_id: int) -> Iterator[None]:
        """On SQLite, where SELECT ... FOR UPDATE is a plain read: a lock file beside the
        database, held around a decision (released by the kernel when the process dies).
        Elsewhere nothing: the database's row lock does it."""
        path = sqlite_path(self.engine.url) if self.engine.dialect.name == "sqlite" else None
        if path is None:
            yield
            return
        # a file beside the database, not the database: closing any descriptor of that file
        # would drop SQLite's own locks on it
        lock_path = path.with_name(path.name + ".new-trial.lock")
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + LOCK_WAIT_S
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"the study's lock {lock_path} is held") from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(descriptor)  # and with it the lock

    def set_study_attr_once(self, study_id: int, key: str, value: Any) -> Any:
        """The study's user attribute `key`, written as `value` only if it has none; one process
        at a time decides (the study's row lock), on one connection. Returns what is stored."""
        from optuna.storages._rdb import models

        study, attr = models.StudyModel, models.StudyUserAttributeModel
        with interruptions_held(), self._sqlite_lock(study_id), self.engine.begin() as connection:
            locked = sqlalchemy.select(study.study_id).where(study.study_id == study_id)
            if connection.dialect.name != "sqlite":
                locked = locked.with_for_update()
            connection.execute(locked)
            found = connection.execute(
                sqlalchemy.select(attr.value_json).where(attr.study_id == study_id, attr.key == key)
            ).scalar_one_or_none()
            if found is not None:
                return json.loads(found)
            connection.execute(
                sqlalchemy.insert(attr).values(
                    study_id=study_id, key=key, value_json=json.dumps(value)
                )
            )
        return value

    def waiting_trial_ids(self, study_id: int) -> list[int]:
        """The ids of the study's queued trials, oldest first (one narrow read)."""
        from optuna.storages._rdb import models

        trial = models.TrialModel
        with self.engine.connect() as connection:
            return list(
                connection.execute(
                    sqlalchemy.select(trial.trial_id)
                    .where(trial.study_id == study_id, trial.state == TrialState.WAITING)
                    .order_by(trial.number)
                ).scalars()
            )

    # -- state changes -------------------------------------------------------------------

    @held
    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        """As Optuna's, except that on SQLite the transaction takes the write lock before it
        reads the trial's state, so that the check and the change are one step (Optuna reads
        with SELECT ... FOR UPDATE, which SQLite ignores: two workers could both take a queued
        trial, optuna#4621, and a FAIL written by another worker could be overwritten)."""
        if self.engine.dialect.name != "sqlite":
            return super().set_trial_state_values(trial_id, state, values)
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        trial_model = models.TrialModel
        try:
            with _create_scoped_session(self.scoped_session) as session:
                session.execute(  # a write that changes nothing: SQLite's write lock, now
                    sqlalchemy.update(trial_model)
                    .where(trial_model.trial_id == trial_id)
                    .values(state=trial_model.state)
                )
                trial = trial_model.find_or_raise_by_id(trial_id, session)
                self.check_trial_is_updatable(trial_id, trial.state)
                if values is not None:
                    for objective, value in enumerate(values):
                        self._set_trial_value_without_commit(session, trial, objective, value)
                if state == TrialState.RUNNING and trial.state != TrialState.WAITING:
                    return False
                trial.state = state
                if state == TrialState.RUNNING:
                    trial.datetime_start = datetime.now()
                if state.is_finished():
                    trial.datetime_complete = datetime.now()
        except sqlalchemy.exc.IntegrityError:
            return False
        return True

    def end_running(self, trial_id: int, state: TrialState, user_attrs: Mapping[str, Any]) -> bool:
        """End a RUNNING trial as `state` with `user_attrs` (e.g. its fail reason), in one
        transaction; False when it is no longer RUNNING (another process ended it first)."""
        from optuna.storages._rdb import models

        trial = models.TrialModel
        with interruptions_held(), self.engine.begin() as connection:
            ended = connection.execute(
                sqlalchemy.update(trial)
                .where(trial.trial_id == trial_id, trial.state == TrialState.RUNNING)
                .values(state=state, datetime_complete=datetime.now())
            )
            if ended.rowcount != 1:
                return False
            _write_attrs(connection, trial_id, user_attrs)
        return True

    def running_heartbeats(self, study_id: int) -> list[tuple[int, float | None]]:
        """(trial id, seconds since its last heartbeat, None: it has none) of every RUNNING
        trial, by the database's clock (one narrow read)."""
        from optuna.storages._rdb import models

        trial, beat = models.TrialModel, models.TrialHeartbeatModel
        with self.engine.connect() as connection:
            now = connection.execute(sqlalchemy.select(sqlalchemy.func.now())).scalar_one()
            rows = connection.execute(
                sqlalchemy.select(trial.trial_id, beat.heartbeat)
                .outerjoin(beat, beat.trial_id == trial.trial_id)
                .where(trial.study_id == study_id, trial.state == TrialState.RUNNING)
            ).all()
        now = now.replace(tzinfo=None)  # PostgreSQL answers with a zone; the rows have none
        return [(tid, None if at is None else (now - at).total_seconds()) for tid, at in rows]

    def state_counts(self, study_id: int) -> dict[TrialState, int]:
        """How many trials of the study are in each state (one narrow read)."""
        from optuna.storages._rdb import models

        trial = models.TrialModel
        with self.engine.connect() as connection:
            rows = connection.execute(
                sqlalchemy.select(trial.state, sqlalchemy.func.count())
                .where(trial.study_id == study_id)
                .group_by(trial.state)
            ).all()
        return {state: count for state, count in rows}

    def study_of(self, trial_id: int) -> int:
        """The id of the trial's study (one narrow read)."""
        from optuna.storages._rdb import models

        trial = models.TrialModel
        with self.engine.connect() as connection:
            return connection.execute(
                sqlalchemy.select(trial.study_id).where(trial.trial_id == trial_id)
            ).scalar_one()

    def trial_state(self, trial_id: int) -> TrialState:
        """The trial's state as stored now (one narrow read)."""
        from optuna.storages._rdb import models

        trial = models.TrialModel
        with self.engine.connect() as connection:
            return connection.execute(
                sqlalchemy.select(trial.state).where(trial.trial_id == trial_id)
            ).scalar_one()

    # -- the heartbeat -------------------------------------------------------------------

    def beat(self, trial_id: int) -> TrialState | None:
        """One heartbeat of a running trial, and its state as stored (None: the database did
        not answer; never raised, so that the heartbeat thread outlives an outage)."""
        self.record_heartbeat(trial_id)
        try:
            state = type(self).trial_state.__wrapped__(self, trial_id)  # one try, no retries
        except Exception:
            return None
        return state

    def record_heartbeat(self, trial_id: int) -> None:
        """One beat; a failed one is skipped (logged once per outage), never raised: the
        heartbeat thread must outlive the outage."""
        try:
            super().record_heartbeat(trial_id)
        except Exception as error:
            if self.health.healthy_for() > 0:
                _log.warning(
                    "heartbeat of trial %s not recorded (%s); retrying",
                    trial_id,
                    type(error).__name__,
                )
            self.health.failed()
            return
        self.health.succeeded()

    def baseline_heartbeat(self, trial_id: int) -> None:
        """A heartbeat row, now, for a RUNNING trial that has none (a trial made outside
        tunelab, or by an older one): from here its owner has a grace period to beat."""
        from optuna.storages._rdb import models

        beat = models.TrialHeartbeatModel
        with contextlib.suppress(sqlalchemy.exc.IntegrityError), self.engine.begin() as connection:
            connection.execute(
                sqlalchemy.insert(beat).values(trial_id=trial_id, heartbeat=sqlalchemy.func.now())
            )


def _write_attrs(
    connection: sqlalchemy.Connection, trial_id: int, attrs: Mapping[str, Any]
) -> None:
    """Upsert trial user attributes inside a transaction (Optuna's table, Optuna's JSON)."""
    from optuna.storages._rdb import models

    attr = models.TrialUserAttributeModel
    for key, value in attrs.items():
        connection.execute(
            sqlalchemy.delete(attr).where(attr.trial_id == trial_id, attr.key == key)
        )
        connection.execute(
            sqlalchemy.insert(attr).values(trial_id=trial_id, key=key, value_json=json.dumps(value))
        )


# Reads and idempotent writes outlive an outage. Optuna's cache wrapper calls the private
# _set_trial_param; creating trials is retried by the callers, who check first what exists.
for _name in (
    "_set_trial_param",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_all_studies",
    "get_trial",
    "get_trial_id_from_study_id_trial_number",
    "_get_trials",
    "_get_best_trial_id",
    "_get_stale_trial_ids",
    "trial_state",
    "running_heartbeats",
    "baseline_heartbeat",
    "state_counts",
    "waiting_trial_ids",
    "study_of",
):
    setattr(ResilientRDBStorage, _name, _resilient(getattr(ResilientRDBStorage, _name)))


class StudyStorage(_CachedStorage):
    """Optuna's cache of finished trials over a ResilientRDBStorage, that also learns a trial it
    has not read when the trial's parameters are set (a queued trial a worker took by its id,
    without reading every unfinished trial of the study first), and passes tunelab's own
    storage methods through to the database's."""

    def __init__(self, backend: ResilientRDBStorage) -> None:
        super().__init__(backend)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_backend", "_lock", "_studies"):
            raise AttributeError(name)
        return getattr(self._backend, name)

    def set_trial_param(self, trial_id: int, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            known = trial_id in self._trial_id_to_study_id_and_number
        if not known:
            trial = self._backend.get_trial(trial_id)
            study_id = self._backend.study_of(trial_id)
            with self._lock:
                self._studies.setdefault(study_id, _StudyInfo())
                self._add_trials_to_cache(study_id, [trial])
        super().set_trial_param(trial_id, *args, **kwargs)


def rdb_of(study: optuna.Study) -> ResilientRDBStorage | None:
    """The study's ResilientRDBStorage under Optuna's cache wrapper (None: another storage)."""
    storage = study._storage
    while isinstance(getattr(storage, "_backend", None), optuna.storages.BaseStorage):
        storage = storage._backend
    return storage if isinstance(storage, ResilientRDBStorage) else None


def open_storage(
    url_text: str,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    trial_target: int | None = None,
) -> StudyStorage:
    """A ResilientRDBStorage under its cache (StudyStorage, which passes the database's own
    methods through); with a heartbeat, its trials are born alive (see the class) and counted
    dead once their heartbeat is older than the grace period; with `trial_target`, no new
    trial beyond it (`TargetReached`)."""
    path = sqlite_path(make_url(url_text))
    if path is not None:
        create_private(path)
        enable_wal(path)
    heartbeat = {}
    if heartbeat_interval:
        heartbeat = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period}
    return StudyStorage(
        ResilientRDBStorage(
            url_text, engine_kwargs=engine_kwargs(url_text), trial_target=trial_target, **heartbeat
        )
    )


def create_private(path: Path) -> None:
    """Create a database file readable by its owner only (SQLite gives its -wal and -shm files
    the database's permissions), and its folder; an existing file is left as it is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
