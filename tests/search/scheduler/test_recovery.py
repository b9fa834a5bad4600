"""Recovery: dead trials ended once, exactly one retry per dead or interrupted trial, owners
gone from this machine found at once, others after their heartbeat's grace period (and never
by a worker that has not itself reached the database for that long), a limit on retries."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import optuna
import pytest
import sqlalchemy
import sqlalchemy.orm
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from tunelab.objectives import keys
from tunelab.search.adapters.storage import open_storage, rdb_of
from tunelab.search.adapters.transient import is_transient
from tunelab.search.scheduler import lineage
from tunelab.search.scheduler.hosts import owner_gone, process_owner
from tunelab.search.scheduler.recovery import GONE, MAX_RETRY, STALE, Recovery

LR = {"lr": FloatDistribution(1e-4, 1.0, log=True)}


def _study(url, heartbeat=None, grace=None):
    storage = open_storage(url, heartbeat_interval=heartbeat, grace_period=grace)
    return optuna.create_study(study_name="s", storage=storage, load_if_exists=True)


def _running(study, owner: str) -> optuna.Trial:
    """A trial born RUNNING for `owner`, with a parameter, as a worker takes it."""
    storage = rdb_of(study)
    trial = optuna.Trial(study, storage.take_new(study, lineage.owner_attrs(owner)))
    trial.suggest_float("lr", 1e-4, 1.0, log=True)
    trial.report(0.5, 1)
    return trial


def _failed(study, reason: str | None):
    """A FAIL trial with a configuration and a curve."""
    study.enqueue_trial({"lr": 0.01})
    trial = study.ask(LR)
    trial.report(0.5, 1)
    if reason is not None:
        trial.set_user_attr(keys.FAIL_REASON, reason)
    study.tell(trial, state=TrialState.FAIL)
    return study.trials[-1]


def test_workers_sweeping_together_queue_one_retry_of_an_interrupted_trial(storage_url):
    study = _study(storage_url)
    interrupted = _failed(study, "interrupted")
    handles = [_study(storage_url) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        queued = list(pool.map(lambda s: Recovery(s, rdb_of(s), 30).queue_retries(), handles))
    assert sorted(queued) == [[], [], [], [interrupted.number]]
    (retry,) = study.get_trials(states=(TrialState.WAITING,))
    assert lineage.retry_of(retry) == interrupted.number and retry.params == {"lr": 0.01}
    assert retry.intermediate_values == {1: 0.5}  # its curve comes over
    assert lineage.owner(retry) is None and keys.FAIL_REASON not in retry.user_attrs


def test_a_configuration_that_keeps_dying_stops_being_retried(tmp_path):
    study = _study(f"sqlite:///{tmp_path / 's.db'}")
    recovery = Recovery(study, rdb_of(study), 30)
    last = _failed(study, GONE)
    for _ in range(MAX_RETRY):  # each death so far was retried
        assert recovery.queue_retries() == [last.number]
        last = _take_and_fail(study, GONE)
    assert recovery.queue_retries() == []  # died MAX_RETRY + 1 times: no more
    interrupted = _take_and_fail(study, "interrupted", retry_of=last)
    assert recovery.queue_retries() == [interrupted.number]  # a user's stop is not its fault


def _take_and_fail(study, reason, retry_of=None):
    if retry_of is not None:
        assert lineage.queue_successor(study, retry_of, lineage.RETRY)
    trial = study.ask(LR)  # the queued retry
    trial.set_user_attr(keys.FAIL_REASON, reason)
    study.tell(trial, state=TrialState.FAIL)
    return study.trials[-1]


@pytest.mark.slow  # real processes
def test_a_trial_whose_process_is_gone_from_this_machine_is_ended_at_once(tmp_path):
    study = _study(f"sqlite:///{tmp_path / 's.db'}", heartbeat=1, grace=600)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    dead = _running(study, process_owner(int(gone.stdout))).number
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = _running(study, process_owner(alive.pid)).number
        remote = _running(study, "another-host/x/y/z:1:1").number
        me = process_owner(worker="me")
        mine = _running(study, me).number  # this worker, not running it any more
        neighbour = _running(study, process_owner(worker="other")).number  # another thread's
        recovery = Recovery(study, rdb_of(study), 600, me=me)
        assert sorted(recovery.sweep(running_here=())) == [dead, mine]
        assert recovery.sweep(running_here=()) == []  # once
    finally:
        alive.kill()
    states = {t.number: t.state for t in study.trials}
    assert states[live] == states[remote] == TrialState.RUNNING  # left to their heartbeats
    assert states[neighbour] == TrialState.RUNNING  # a worker of this process, alive
    assert study.trials[dead].user_attrs[keys.FAIL_REASON] == GONE
    retries = [lineage.retry_of(t) for t in study.get_trials(states=(TrialState.WAITING,))]
    assert sorted(retries) == [dead, mine]


def test_this_worker_keeps_the_trial_it_runs_and_its_neighbours_keep_theirs():
    me = process_owner(worker="me")
    assert not owner_gone(me, running_here={3}, number=3, me=me)
    assert owner_gone(me, running_here=set(), number=3, me=me)
    assert not owner_gone(process_owner(worker="other"), running_here=set(), number=3, me=me)
    assert not owner_gone("elsewhere/a/b/c:1:1", running_here=set(), number=3, me=me)


def test_a_late_heartbeat_is_a_death_only_to_a_worker_that_reached_the_database_that_long(
    storage_url,
):
    study = _study(storage_url, heartbeat=1, grace=1)
    trial = _running(study, "another-host/x/y/z:1:1")  # born with a heartbeat, never beats
    storage = rdb_of(study)
    recovery = Recovery(study, storage, 1)
    storage.health.failed()  # this worker just met an outage: every heartbeat looks late
    storage.health.succeeded()
    time.sleep(2.2)  # the heartbeat is older than the grace period (SQLite counts seconds)
    assert storage.health.healthy_for() >= 1
    assert recovery.sweep() == [trial.number]
    ended = study.trials[trial.number]
    assert ended.state == TrialState.FAIL and ended.user_attrs[keys.FAIL_REASON] == STALE


def test_after_an_outage_no_live_trial_is_taken_for_dead(storage_url):
    study = _study(storage_url, heartbeat=1, grace=1)
    trial = _running(study, "another-host/x/y/z:1:1")
    storage = rdb_of(study)
    time.sleep(2.2)  # late: its owner could not beat while the database was down...
    storage.health.failed()  # ...and nor could this worker reach it
    storage.health.succeeded()
    assert Recovery(study, storage, 1).sweep() == []  # back less than a grace period ago
    assert study.trials[trial.number].state == TrialState.RUNNING


def test_a_running_trial_without_a_heartbeat_gets_one_and_goes_stale(storage_url):
    study = _study(storage_url, heartbeat=1, grace=1)
    plain = optuna.create_study(study_name="s", storage=storage_url, load_if_exists=True)
    orphan = plain.ask()  # made RUNNING outside tunelab: no heartbeat row, no owner
    storage = rdb_of(study)
    time.sleep(1.2)
    recovery = Recovery(study, storage, 1)
    assert recovery.sweep() == []  # its heartbeat starts now
    time.sleep(2.2)
    assert recovery.sweep() == [orphan.number]


def test_a_retry_belongs_to_its_configuration_before_it_starts(tmp_path):
    """A retry killed before it started still counts towards MAX_RETRY and still points at
    the checkpoint its source resumed from."""
    study = _study(f"sqlite:///{tmp_path / 's.db'}")
    first = _failed(study, GONE)
    assert lineage.queue_successor(study, first, lineage.RETRY)
    retry = study.trials[-1]
    assert lineage.root(retry) == first.number and lineage.checkpoint_sources(retry) == (0,)
    died = _take_and_fail(study, GONE)  # a worker takes the retry and dies at once
    assert lineage.queue_successor(study, died, lineage.RETRY)
    again = study.trials[-1]
    assert lineage.root(again) == first.number
    # its source's checkpoint first, then the one its source would have resumed from
    assert lineage.checkpoint_sources(again) == (died.number, first.number)


def test_a_session_the_server_ended_is_transient_whatever_its_error_class(postgres):
    """The server ends sessions for real: one idle in a transaction past its timeout (tunelab
    sets one; PostgreSQL says so with an InternalError, not an OperationalError), and one it
    terminates, as a restart does, then used again in the same session, as Optuna's
    `_get_trials` does when it falls back to a slower query (PendingRollbackError, then
    Optuna's "StorageInternalError: An exception is raised during the commit": benchmarks/
    chaos.py saw trials fail with it at a PostgreSQL restart)."""
    url = postgres.new()
    idle = sqlalchemy.create_engine(
        url, connect_args={"options": "-c idle_in_transaction_session_timeout=200ms"}
    )
    engine = sqlalchemy.create_engine(url)
    try:
        with idle.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))  # a transaction begins, and idles
            time.sleep(1.0)
            with pytest.raises(sqlalchemy.exc.InternalError) as timed_out:
                connection.execute(sqlalchemy.text("SELECT 1"))
        assert timed_out.value.connection_invalidated and is_transient(timed_out.value)

        with sqlalchemy.orm.Session(engine) as session, engine.connect() as admin:
            pid = session.execute(sqlalchemy.text("SELECT pg_backend_pid()")).scalar_one()
            admin.execute(sqlalchemy.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(sqlalchemy.exc.OperationalError) as terminated:
                session.execute(sqlalchemy.text("SELECT 1"))
            with pytest.raises(sqlalchemy.exc.PendingRollbackError) as reused:
                session.commit()
        assert is_transient(terminated.value)
        for error in (timed_out.value, reused.value):
            try:
                raise optuna.exceptions.StorageInternalError("commit failed") from error
            except optuna.exceptions.StorageInternalError as wrapped:
                assert is_transient(wrapped)
    finally:
        idle.dispose()
        engine.dispose()


def test_storage_errors_of_a_database_restart_are_transient():
    down = sqlalchemy.exc.OperationalError("SELECT", {}, Exception("server closed"))
    try:
        raise optuna.exceptions.StorageInternalError("commit failed") from down
    except optuna.exceptions.StorageInternalError as wrapped:
        assert is_transient(wrapped)
    assert is_transient(down)
    assert not is_transient(ValueError("bad value"))
    assert not is_transient(optuna.exceptions.StorageInternalError("no cause"))
