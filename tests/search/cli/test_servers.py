"""`tunelab ui` and `dashboard`: a SIGTERM stops them at once (not at a trial's next rung, as it
stops a worker), and `ui` says "ready" only once its server answers."""

from __future__ import annotations

import signal

from tunelab.search.adapters import signals
from tunelab.search.cli import servers


def test_a_server_takes_sigterm_at_once_and_puts_the_handlers_back():
    before = {s: signal.getsignal(s) for s in signals.STOP_SIGNALS}
    try:
        signals.interrupt_once(stop_at_rung=True)  # as `main` sets it up
        at_rung = signal.getsignal(signal.SIGTERM)
        with servers._stopped_at_once():
            assert signal.getsignal(signal.SIGTERM) is signals._interrupt
        assert signal.getsignal(signal.SIGTERM) is at_rung
    finally:
        for stop, handler in before.items():
            signal.signal(stop, handler)


def test_ready_is_not_said_while_nothing_answers(capsys):
    done = servers._say_when_ready("http://127.0.0.1:9/health", "MLflow UI ready")
    assert not done.wait(0.6)  # port 9 (discard) answers no HTTP: still waiting
    done.set()
    assert "ready" not in capsys.readouterr().out
