"""The first interruption: raised once, later signals ignored, clean-up errors kept quiet."""

import logging
import signal
import threading

import optuna
import pytest
import sqlalchemy

from tunelab.search.adapters.signals import (
    CLEANUP_LOGGERS,
    Terminated,
    held,
    interrupt_once,
    interruptions_held,
)


@pytest.fixture
def restored_signals():
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    levels = {name: logging.getLogger(name).level for name in CLEANUP_LOGGERS}
    yield
    for s, handler in handlers.items():
        signal.signal(s, handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_sigterm_interrupts_once_and_quiets_the_pools_cleanup_errors(restored_signals):
    pool = sqlalchemy.create_engine("sqlite://").pool
    assert pool.logger.isEnabledFor(logging.ERROR)
    interrupt_once()
    with pytest.raises(Terminated):
        signal.raise_signal(signal.SIGTERM)
    signal.raise_signal(signal.SIGTERM)  # ignored: the clean-up goes on
    signal.raise_signal(signal.SIGINT)
    # "Error closing cursor" after a signal inside a read: swallowed by SQLAlchemy, not shown
    assert not pool.logger.isEnabledFor(logging.ERROR)


def test_a_signal_during_a_held_call_is_raised_when_the_call_has_returned(restored_signals):
    interrupt_once()
    finished = []
    with pytest.raises(Terminated), interruptions_held():
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGINT)  # a second one while held: still one interruption
        finished.append(True)
    assert finished == [True]
    signal.raise_signal(signal.SIGINT)  # spent: ignored


def test_held_calls_without_a_signal_leave_the_interruption_armed(restored_signals):
    interrupt_once()
    assert held(lambda x: x + 1)(1) == 2
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)


def test_outside_the_main_thread_a_held_call_changes_no_handler(restored_signals):
    interrupt_once()
    seen = []
    thread = threading.Thread(
        target=lambda: seen.append(held(signal.getsignal)(signal.SIGINT)), daemon=True
    )
    thread.start()
    thread.join()
    assert seen == [signal.getsignal(signal.SIGINT)]


def signal_inside(engine, statement: str):
    """SIGINT while `engine` executes its first `statement`: inside the database write."""

    def interrupt(conn, cursor, text, parameters, context, executemany):
        if text.lstrip().upper().startswith(statement) and not fired:
            fired.append(text)
            signal.raise_signal(signal.SIGINT)

    fired: list[str] = []
    sqlalchemy.event.listen(engine, "before_cursor_execute", interrupt)
    return fired


def test_an_mlflow_write_to_a_database_ends_before_the_interruption(restored_signals, tmp_path):
    from tunelab.search.adapters.tracking import StudyTracker

    tracker = StudyTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "held")
    run = tracker.client.create_run(tracker.experiment_id)
    fired = signal_inside(tracker.client._tracking_client.store.engine, "INSERT")
    interrupt_once()
    with pytest.raises(KeyboardInterrupt):
        tracker.client.set_tag(run.info.run_id, "tunelab.fail_reason", "interrupted")
    assert fired
    assert tracker.client.get_run(run.info.run_id).data.tags["tunelab.fail_reason"] == "interrupted"


def test_an_optuna_write_ends_before_the_interruption(restored_signals, tmp_path):
    from tunelab.search.adapters.storage import ResilientRDBStorage

    storage = ResilientRDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    fired = signal_inside(storage.engine, "INSERT")
    interrupt_once()
    with pytest.raises(KeyboardInterrupt):
        trial.report(0.5, step=1)
    assert fired
    assert study.trials[0].intermediate_values == {1: 0.5}


def test_a_worker_takes_sigterm_as_a_stop_at_its_next_rung(restored_signals):
    from tunelab.search.adapters.signals import stop_if_requested, stop_requested

    alarm = signal.getsignal(signal.SIGALRM)
    interrupt_once(stop_at_rung=True)
    signal.raise_signal(signal.SIGTERM)  # asks: nothing raised yet, the rung comes first
    assert stop_requested()
    with pytest.raises(Terminated):
        stop_if_requested()  # what the loop does at the rung
    assert signal.getsignal(signal.SIGALRM) is alarm  # its deadline is gone with it
    signal.raise_signal(signal.SIGTERM)  # spent: ignored


def test_a_second_sigterm_does_not_wait_for_the_rung(restored_signals):
    interrupt_once(stop_at_rung=True)
    signal.raise_signal(signal.SIGTERM)
    with pytest.raises(Terminated):
        signal.raise_signal(signal.SIGTERM)


def test_a_wait_ends_within_a_quarter_second_of_a_requested_stop(restored_signals):
    """A worker polling for work, and `run --workers` waiting on its workers: a SIGTERM that
    asks for a stop ends the wait at once (the parent forwards it to its workers)."""
    import os
    import time

    from tunelab.search.adapters.signals import STOP_CHECK_S, sleep_unless_stopped

    alarm = signal.getsignal(signal.SIGALRM)
    interrupt_once(stop_at_rung=True)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    start = time.monotonic()
    timer.start()
    try:
        with pytest.raises(Terminated):
            sleep_unless_stopped(10)
    finally:
        timer.cancel()
    assert time.monotonic() - start < 0.3 + STOP_CHECK_S + 0.2
    assert signal.getsignal(signal.SIGALRM) is alarm
