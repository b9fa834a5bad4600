"""A running trial's heartbeat: a thread that outlives database outages.

Every `interval` seconds it writes the trial's heartbeat and reads its state. A failed beat is
skipped (the next one, an interval later, goes through a fresh connection); the thread ends only
when the trial does. When the stored state says the trial has ended while this process still
runs it (another worker took its late heartbeat for a death and failed it), `ended_elsewhere`
is set: the trial stops at its next rung, quietly, and its retry resumes it.
"""

from __future__ import annotations

import threading

from optuna.trial import TrialState

from tunelab.search.adapters.storage import ResilientRDBStorage

JOIN_S = 10.0
"""How long stopping waits for a beat in progress."""


class Heartbeat:
    """The heartbeat of one trial while the `with` block runs."""

    def __init__(self, storage: ResilientRDBStorage | None, trial_id: int, interval: float) -> None:
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self.ended_elsewhere = False
        """The stored trial ended while this process runs it."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        if self.storage is not None and self.storage.heartbeat_interval:
            self._thread = threading.Thread(
                target=self._beat, name=f"heartbeat-{self.trial_id}", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(JOIN_S)

    def _beat(self) -> None:
        assert self.storage is not None
        while not self._stop.wait(self.interval):
            state = self.storage.beat(self.trial_id)
            if state is not None and state != TrialState.RUNNING:
                self.ended_elsewhere = True
                return
