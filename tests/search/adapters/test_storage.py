"""The Optuna storage adapter, on SQLite and on the local PostgreSQL."""

import os
import sqlite3

import optuna
import pytest
from optuna.trial import TrialState

from tunelab.search.adapters.storage import (
    TargetReached,
    check_database,
    engine_kwargs,
    open_storage,
    parse_url,
    shown_url,
    sqlite_path,
)
from tunelab.search.spec import SpecError


def test_urls_are_checked_and_printed_without_password():
    with pytest.raises(SpecError, match="malformed storage URL"):
        parse_url("not a url")
    with pytest.raises(SpecError, match="unsupported database"):
        parse_url("nosuchdb://x/y")
    shown = shown_url("postgresql+psycopg://user:s3cret@db:5432/optuna")
    assert "s3cret" not in shown and "user" in shown and "db:5432/optuna" in shown
    assert shown_url("http://mlflow:5000") == "http://mlflow:5000"


def test_sqlite_paths(tmp_path):
    assert sqlite_path(parse_url(f"sqlite:///{tmp_path}/a.db")) == tmp_path / "a.db"
    assert sqlite_path(parse_url("sqlite://")) is None
    assert sqlite_path(parse_url("postgresql://h/db")) is None


def test_a_reachable_database_passes_the_check(storage_url):
    check_database(storage_url)


def test_check_creates_nothing_and_the_store_its_folder(tmp_path):
    url = f"sqlite:///{tmp_path}/deep/er/studies.db"
    check_database(url)  # a run refused after its checks leaves no trace
    assert list(tmp_path.iterdir()) == []
    open_storage(url).remove_session()
    assert (tmp_path / "deep" / "er" / "studies.db").is_file()
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(SpecError, match="is not a file"):
        check_database(f"sqlite:///{tmp_path}/dir.db")
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(SpecError, match="notes.txt is not a folder"):
        check_database(f"sqlite:///{tmp_path}/notes.txt/studies.db")
    (tmp_path / "locked").mkdir(mode=0o500)
    if os.geteuid() != 0:  # root writes anywhere
        with pytest.raises(SpecError, match="is not writable"):
            check_database(f"sqlite:///{tmp_path}/locked/sub/studies.db")


def test_an_unreachable_server_is_one_line_without_password():
    url = "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/x"
    with pytest.raises(SpecError, match="cannot reach storage database") as error:
        check_database(url)
    assert "s3cret" not in str(error.value) and "\n" not in str(error.value)


def test_open_storage_gives_a_working_storage_with_a_heartbeat(storage_url):
    storage = open_storage(storage_url, 5, 20)
    assert storage.get_heartbeat_interval() == 5
    study = optuna.create_study(study_name="s", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(optuna.load_study(study_name="s", storage=storage_url).trials) == 2
    if storage_url.startswith("sqlite"):  # several processes share SQLite through WAL
        path = sqlite_path(parse_url(storage_url))
        with sqlite3.connect(path) as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert engine_kwargs(storage_url) == {"connect_args": {"timeout": 60}}
    else:
        assert engine_kwargs(storage_url)["pool_pre_ping"] is True


def _pop_all(url: str, start, taken) -> None:
    """One worker: take queued trials until none is left (as study.ask does)."""
    study = optuna.load_study(study_name="q", storage=open_storage(url))
    start.wait()
    while (trial_id := study._pop_waiting_trial_id()) is not None:
        taken.put(trial_id)


@pytest.mark.slow  # worker processes
def test_each_queued_trial_is_taken_by_one_worker_only(storage_url):
    # On SQLite, Optuna's SELECT ... FOR UPDATE is no lock: several workers asking at once
    # could each take the same queued trial (optuna#4621) and train it twice.
    import multiprocessing

    study = optuna.create_study(study_name="q", storage=open_storage(storage_url))
    for x in range(40):
        study.enqueue_trial({"x": x})
    context = multiprocessing.get_context("fork")  # the workers run this module's function
    start, taken = context.Barrier(4), context.Queue()
    workers = [context.Process(target=_pop_all, args=(storage_url, start, taken)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    ids = [taken.get(timeout=10) for _ in range(taken.qsize())]
    assert sorted(ids) == sorted(t._trial_id for t in study.get_trials())
    assert all(worker.exitcode == 0 for worker in workers)


def _ask_until_refused(url: str, target: int, start, asked) -> None:
    """One worker: start new trials, ending each at once, until the storage refuses one."""
    storage = open_storage(url, trial_target=target)
    study = optuna.load_study(study_name="t", storage=storage)
    start.wait()
    while True:
        try:
            trial_id = storage.take_new(study, {})
        except TargetReached:
            return
        asked.put(storage.get_trial(trial_id).number)
        storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [0.0])


@pytest.mark.slow  # worker processes
def test_workers_starting_trials_at_once_never_pass_the_target(storage_url):
    # Optuna's MaxTrialsCallback counts, then asks: two workers ending trials in the same
    # instant both saw one trial missing and both started one (4 finished of a target of 3).
    import multiprocessing

    study = optuna.create_study(study_name="t", storage=open_storage(storage_url))
    study.enqueue_trial({"x": 0})
    study.tell(study.ask(), state=TrialState.FAIL)  # the queued trial, failed: it does not count
    context = multiprocessing.get_context("fork")  # the workers run this module's function
    start, asked = context.Barrier(4), context.Queue()
    workers = [
        context.Process(target=_ask_until_refused, args=(storage_url, 30, start, asked))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert all(worker.exitcode == 0 for worker in workers)
    numbers = [asked.get(timeout=10) for _ in range(asked.qsize())]
    assert len(numbers) == len(set(numbers)) == 30  # each new trial once, none past the target
    states = [t.state for t in study.get_trials()]
    assert states.count(TrialState.COMPLETE) == 30 and len(states) == 31


def test_queued_trials_are_not_refused_past_the_target(storage_url):
    storage = open_storage(storage_url, trial_target=1)
    study = optuna.create_study(study_name="full", storage=storage)
    first = storage.take_new(study, {})
    storage.set_trial_state_values(first, TrialState.COMPLETE, [1.0])
    with pytest.raises(TargetReached):
        storage.take_new(study, {})
    study.enqueue_trial({"x": 1})  # a retry or a continuation: not a new trial
    (waiting,) = storage.waiting_trial_ids(study._study_id)
    assert storage.take_waiting(waiting, {}) and len(study.trials) == 2
