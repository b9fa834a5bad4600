"""SIGTERM as an interruption: `docker stop` and a scheduler's stop end a trial like Ctrl-C."""

from __future__ import annotations

import signal


class Terminated(KeyboardInterrupt):
    """SIGTERM (e.g. `docker stop`): handled like Ctrl-C, exit code 143."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def raise_on_sigterm() -> None:
    """From now on, SIGTERM raises Terminated in the main thread."""
    signal.signal(signal.SIGTERM, _raise_terminated)
