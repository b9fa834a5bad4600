"""Database outages, made for real: a TCP relay in front of PostgreSQL that the test cuts or
freezes (the server itself is never touched), an exclusive lock on a SQLite file held by
another process, a trial failed under a live worker. Workers wait with backoff and go on; their
heartbeats resume; nothing crashes, nothing is counted twice, the target is met exactly.

Before the fix: the heartbeat thread ended at the first failed write (Optuna's error wrapping
hid the database error from the handler), an outage during `report` or `tell` crashed the
worker (`UnboundLocalError` from inside Optuna's optimize loop), a live trial failed by another
worker crashed its owner (`UpdateFinishedTrialError`, then "Cannot tell a FAIL trial"), a host
that vanished holding the trial-creation lock blocked every worker for TCP's two hours, and on
SQLite a stale-trial FAIL and the owner's COMPLETE could both be written."""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from mlflow import MlflowClient
from optuna.trial import TrialState

from tunelab.objectives import keys
from tunelab.search.adapters import storage as storage_module
from tunelab.search.adapters.storage import open_storage, rdb_of
from tunelab.search.scheduler import lineage
from tunelab.search.scheduler.heartbeat import Heartbeat

sys.path.insert(0, str(Path(__file__).parent))
import crashpoints  # noqa: E402  (tests/faults, by path)
from outages import TcpRelay, hold_sqlite_lock  # noqa: E402

pytestmark = pytest.mark.slow  # a relay (a server), worker processes

FAULTS = Path(__file__).parent
LONG_TRIALS = "--max-epochs 12 --patience 12 --pruner none"
"""Trials of the tiny task of a dozen rungs (one per epoch of digits): an outage or another
worker's write lands inside one."""


@pytest.fixture
def relay(postgres):
    """A fresh database on the local server, reached through a relay: (relay, its URL, the
    URL straight to the server, for the test's own reads)."""
    direct = postgres.new()
    with TcpRelay() as relay:
        yield relay, relay.url(direct.rsplit("/", 1)[1]), direct


def _tiny_args(storage: str, tmp_path: Path, extra: str = "") -> list[str]:
    tracking = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    return [
        *("run", "tiny_task:TinyTask", "--dataset", "digits", "--study-name", "s"),
        *("--storage", storage, "--tracking-uri", tracking, "--quiet"),
        *("--heartbeat-interval", "1", "--grace-period", "2", *extra.split()),
    ]


def _until(check, what: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(f"{what} not seen within {timeout:g} s")


def _running_at_rung(url: str, rung: int):
    storage = optuna.storages.RDBStorage(url)
    try:

        def check():
            try:
                study = optuna.load_study(study_name="s", storage=storage)
            except KeyError:
                return None
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            return next((t for t in running if len(t.intermediate_values) >= rung), None)

        return _until(check, f"a trial at rung {rung}")
    finally:
        storage.engine.dispose()


def test_the_heartbeat_outlives_a_database_outage(relay):
    relay, through, direct = relay
    storage = open_storage(through, heartbeat_interval=1, grace_period=3)
    study = optuna.create_study(study_name="s", storage=storage)
    trial_id = storage.take_new(study, lineage.owner_attrs("a-worker/x/y/z:1:1"))
    watcher = open_storage(direct, heartbeat_interval=1, grace_period=3)
    with Heartbeat(storage, trial_id, 1.0) as heartbeat:
        time.sleep(1.5)
        relay.outage(4.0)  # four beats fail
        time.sleep(3.0)
        ((_, age),) = watcher.running_heartbeats(study._study_id)
        assert age is not None and age < 2.5, f"the last heartbeat is {age} s old"
        assert heartbeat._thread.is_alive() and not heartbeat.ended_elsewhere


# the second outage is longer than the grace period: every heartbeat is late when the database
# comes back, and no worker may take a live trial for dead
@pytest.mark.parametrize(("workers", "outage_s"), [(1, 3.0), (2, 6.0)])
def test_workers_ride_out_an_outage_in_the_middle_of_a_trial(
    relay, cli_popen, tmp_path, workers, outage_s
):
    relay, through, direct = relay
    target = 3
    process = cli_popen(
        _tiny_args(through, tmp_path, f"--n-trials {target} --workers {workers} {LONG_TRIALS}"),
        cwd=tmp_path,
        PYTHONPATH=str(FAULTS),
    )
    _running_at_rung(direct, 2)  # rungs are written: report, then tell, meet the outage
    relay.outage(outage_s)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    tracking = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert crashpoints.check_study(direct, tracking, "s", target) == []


def test_a_worker_rides_out_a_sqlite_lock_held_by_another_process(cli_popen, tmp_path):
    db = tmp_path / "studies.db"
    process = cli_popen(
        _tiny_args(f"sqlite:///{db}", tmp_path, f"--n-trials 2 --workers 1 {LONG_TRIALS}"),
        cwd=tmp_path,
        PYTHONPATH=str(FAULTS),
    )
    _running_at_rung(f"sqlite:///{db}", 2)
    holder = hold_sqlite_lock(db, 5.0)  # every write, and in exclusive mode every read, waits
    holder.wait(timeout=60)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    tracking = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert crashpoints.check_study(f"sqlite:///{db}", tracking, "s", 2) == []


def test_a_live_trial_failed_by_another_worker_is_stopped_quietly_and_resumed(
    storage_url, cli_popen, tmp_path
):
    process = cli_popen(
        _tiny_args(storage_url, tmp_path, f"--n-trials 2 --workers 1 {LONG_TRIALS}"),
        cwd=tmp_path,
        PYTHONPATH=str(FAULTS),
    )
    live = _running_at_rung(storage_url, 3)
    # what another worker does to a trial whose heartbeat it takes for dead
    other = open_storage(storage_url, heartbeat_interval=1, grace_period=3)
    assert other.end_running(
        live._trial_id, TrialState.FAIL, {keys.FAIL_REASON: "died: heartbeat older than the grace"}
    )
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    tracking = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert crashpoints.check_study(storage_url, tracking, "s", 2) == []
    study = optuna.load_study(study_name="s", storage=storage_url)
    (retry,) = [t for t in study.trials if lineage.retry_of(t) == live.number]
    assert retry.state == TrialState.COMPLETE
    assert lineage.resumed_from(retry) == live.number and lineage.resumed_at(retry) > 0
    run = MlflowClient(tracking).get_run(study.trials[live.number].user_attrs[keys.MLFLOW_RUN_ID])
    assert run.info.status == "FAILED"
    assert run.data.tags[keys.RECOVERED_TAG] == "false"  # its worker was alive: it says so


def test_a_host_that_vanishes_holding_the_trial_lock_blocks_others_for_a_bounded_time(
    relay, monkeypatch
):
    relay, through, direct = relay
    # the vanishing worker's session: the server ends it 3 s after it went quiet in a
    # transaction (30 s in production, SESSION_TIMEOUTS)
    monkeypatch.setitem(
        storage_module.SESSION_TIMEOUTS, "idle_in_transaction_session_timeout", "3s"
    )
    vanishing = open_storage(through, heartbeat_interval=1, grace_period=3, trial_target=10)
    study = optuna.create_study(study_name="s", storage=vanishing)
    held, released = threading.Event(), threading.Event()

    def hold() -> None:
        try:  # what a worker holds while it creates a trial: the study's row lock
            with vanishing.engine.begin() as connection:
                connection.execute(
                    sqlalchemy.text("SELECT study_id FROM studies WHERE study_id = :s FOR UPDATE"),
                    {"s": study._study_id},
                )
                held.set()
                relay.freeze()  # the host is gone: its socket stays open, nothing answers
                released.wait(60)
        except Exception:
            pass

    threading.Thread(target=hold, daemon=True).start()
    assert held.wait(10)
    monkeypatch.undo()
    other = open_storage(direct, heartbeat_interval=1, grace_period=3, trial_target=10)
    mine = optuna.load_study(study_name="s", storage=other)
    started = time.monotonic()
    from tunelab.search.adapters.transient import retrying

    retrying(lambda: other.take_new(mine, lineage.owner_attrs("b/x/y/z:1:1")))
    waited = time.monotonic() - started
    released.set()
    relay.restore()
    assert waited < 30, f"the other worker waited {waited:.0f} s for the lock"


def _complete(storage, trial_id: int, start: threading.Barrier) -> bool:
    start.wait()
    try:
        return storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [1.0])
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def _end_running(storage, trial_id: int, start: threading.Barrier) -> bool:
    start.wait()
    return storage.end_running(trial_id, TrialState.FAIL, {keys.FAIL_REASON: "died"})


def _fail(storage, trial_id: int, start: threading.Barrier) -> bool:
    start.wait()
    try:
        return storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


@pytest.mark.parametrize("ender", [_end_running, _fail], ids=["end_running", "optuna_fail"])
def test_a_trial_ends_once_when_two_workers_end_it_at_the_same_moment(storage_url, ender):
    owner = open_storage(storage_url, heartbeat_interval=1, grace_period=3)
    study = optuna.create_study(study_name="s", storage=owner)
    sweeper = open_storage(storage_url, heartbeat_interval=1, grace_period=3)
    both = 0
    for _ in range(15):
        trial_id = owner.take_new(study, lineage.owner_attrs("a/x/y/z:1:1"))
        start = threading.Barrier(2)
        with ThreadPoolExecutor(2) as pool:
            won = [
                pool.submit(_complete, owner, trial_id, start),
                pool.submit(ender, sweeper, trial_id, start),
            ]
            both += all(f.result() for f in won)
        assert rdb_of(study).trial_state(trial_id).is_finished()
    assert both == 0, f"{both} trials were ended twice (last write wins)"
