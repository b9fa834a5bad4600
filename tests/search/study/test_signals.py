"""The first interruption: raised once, later signals ignored, clean-up errors kept quiet."""

import logging
import signal

import pytest
import sqlalchemy

from tunelab.search.study.signals import CLEANUP_LOGGERS, Terminated, interrupt_once


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
