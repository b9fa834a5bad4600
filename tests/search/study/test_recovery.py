"""Recovery: exactly one retry per dead or interrupted trial, owners gone from this host
reclaimed at once, a limit on retries, a heartbeat that survives a failed write."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import optuna
import pytest
import sqlalchemy
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from tunelab.objectives import keys
from tunelab.search.adapters.storage import ResilientRDBStorage, open_storage
from tunelab.search.study.recovery import (
    MAX_RETRY,
    DeadTrialHandler,
    FailureStreak,
    WorkerGaveUp,
    owner_gone,
    process_owner,
    queue_retry,
    reclaim_orphans,
    requeue_interrupted,
)


def _trial(study, state, **attrs):
    study.add_trial(
        optuna.trial.create_trial(
            state=state,
            params={"lr": 0.01},
            distributions={"lr": FloatDistribution(1e-4, 1.0, log=True)},
            intermediate_values={1: 0.5},
            user_attrs=attrs,
        )
    )
    return study.trials[-1]


def _running(study, owner):
    trial = study.ask({"lr": FloatDistribution(1e-4, 1.0, log=True)})
    trial.set_user_attr(keys.OWNER, owner)
    return trial.number


def test_workers_starting_together_queue_one_retry_of_an_interrupted_trial(storage_url):
    study = optuna.create_study(study_name="s", storage=storage_url)
    _trial(study, TrialState.FAIL, **{keys.FAIL_REASON: "interrupted", keys.OWNER: "h:1:1"})
    handles = [optuna.load_study(study_name="s", storage=storage_url) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        queued = list(pool.map(requeue_interrupted, handles))
    assert sorted(queued) == [[], [], [], [0]]
    (retry,) = study.get_trials(states=(TrialState.WAITING,))
    assert retry.user_attrs[keys.RETRY_OF] == 0 and retry.params == {"lr": 0.01}
    assert retry.intermediate_values == {1: 0.5}  # its curve comes over
    assert keys.OWNER not in retry.user_attrs and keys.FAIL_REASON not in retry.user_attrs


def test_a_configuration_that_keeps_dying_stops_being_retried():
    study = optuna.create_study()
    first = _trial(study, TrialState.FAIL)
    for _ in range(MAX_RETRY):  # each death so far was retried
        _trial(study, TrialState.FAIL, **{keys.ORIGINAL_TRIAL: first.number})
    last = study.trials[-1]
    assert not queue_retry(study, last, "died")
    assert queue_retry(study, last, "interrupted")  # a user's stop is not the trial's fault


def test_a_trial_whose_process_is_gone_from_this_host_is_reclaimed_at_once(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=storage)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    dead = _running(study, process_owner(int(gone.stdout)))
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = _running(study, process_owner(alive.pid))
        remote = _running(study, "another-host:1:1")
        mine = _running(study, process_owner())  # this process, not running it any more

        assert sorted(reclaim_orphans(study, DeadTrialHandler())) == [dead, mine]
        assert sorted(reclaim_orphans(study, DeadTrialHandler())) == []  # once
    finally:
        alive.kill()
    states = {t.number: t.state for t in study.trials}
    assert states[live] == states[remote] == TrialState.RUNNING  # left to their heartbeats
    retries = [t.user_attrs[keys.RETRY_OF] for t in study.get_trials(states=(TrialState.WAITING,))]
    assert sorted(retries) == [dead, mine]


def test_this_process_keeps_the_trial_it_runs():
    assert not owner_gone(process_owner(), running_here={3}, number=3)
    assert owner_gone(process_owner(), running_here=set(), number=3)


def test_the_heartbeat_survives_a_failed_write(tmp_path, monkeypatch):
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=1, grace_period=2)
    assert isinstance(storage, ResilientRDBStorage)
    study = optuna.create_study(storage=storage)
    trial = study.ask()

    def locked(self, trial_id):
        raise sqlalchemy.exc.OperationalError("UPDATE", {}, Exception("database is locked"))

    with monkeypatch.context() as patch:
        patch.setattr(optuna.storages.RDBStorage, "record_heartbeat", locked)
        storage.record_heartbeat(trial._trial_id)  # skipped, not raised: the thread goes on
    storage.record_heartbeat(trial._trial_id)
    assert storage._get_stale_trial_ids(study._study_id) == []


def test_a_streak_of_failures_stops_the_worker_and_a_success_resets_it():
    study = optuna.create_study()
    stops = []
    study.stop = lambda: stops.append(True)  # outside study.optimize, Optuna refuses stop()
    streak = FailureStreak(limit=3)
    for state in (TrialState.FAIL, TrialState.FAIL, TrialState.PRUNED, TrialState.FAIL):
        trial = _trial(study, state, **{keys.FAIL_REASON: "RuntimeError: boom"})
        streak(study, trial)
    streak.check()  # two in a row, then one: goes on
    for _ in range(2):
        streak(study, _trial(study, TrialState.FAIL, **{keys.FAIL_REASON: "RuntimeError: boom"}))
    assert stops == [True]
    with pytest.raises(WorkerGaveUp, match="3 trials in a row failed.*RuntimeError: boom"):
        streak.check()


def test_a_retry_belongs_to_its_configuration_before_it_starts():
    """A retry killed before it started still counts towards MAX_RETRY and still points at
    the checkpoint its source resumed from."""
    study = optuna.create_study()
    first = _trial(study, TrialState.FAIL)
    assert queue_retry(study, first, "died")
    retry = study.trials[-1]
    assert retry.user_attrs[keys.ORIGINAL_TRIAL] == first.number
    study.ask()  # a worker takes the retry and dies at once
    study.tell(retry.number, state=TrialState.FAIL)
    died = study.trials[retry.number]
    assert queue_retry(study, died, "died")
    again = study.trials[-1]
    assert again.user_attrs[keys.ORIGINAL_TRIAL] == first.number
    assert again.user_attrs[keys.RESUMED_FROM_TRIAL] == first.number  # its checkpoint


def test_storage_errors_of_a_database_restart_are_transient():
    from tunelab.search.adapters.transient import is_transient

    down = sqlalchemy.exc.OperationalError("SELECT", {}, Exception("server closed"))
    try:
        raise optuna.exceptions.StorageInternalError("commit failed") from down
    except optuna.exceptions.StorageInternalError as wrapped:
        assert is_transient(wrapped)
    assert is_transient(down)
    assert not is_transient(ValueError("bad value"))
    assert not is_transient(optuna.exceptions.StorageInternalError("no cause"))
