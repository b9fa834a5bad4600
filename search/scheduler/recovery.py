"""Trials that did not end on their own: dead workers' trials and interrupted ones, retried.

A RUNNING trial is dead when its owner is certainly gone (a process of this machine that no
longer exists: found at once) or when its heartbeat is older than the grace period (a worker
elsewhere: found after the grace period). A worker judges heartbeats only once it has itself
reached the database for a whole grace period: after an outage every heartbeat is late, and
none of those trials is dead. A RUNNING trial without a heartbeat (made outside tunelab, or by
an older one) gets one, so that it can go stale. A dead trial is ended FAIL with its reason in
one conditional write: of several workers that see it, one ends it; an owner that is alive
after all finds its trial ended and stops it quietly (see the worker).

Then every FAIL trial that died or was interrupted, has parameters to resume and no retry yet
gets exactly one retry (`lineage.queue_successor`), which resumes from its checkpoint. Ending
and retrying are two steps on purpose: a worker that dies between them leaves a FAIL trial
without a retry, and the next sweep, by any worker, queues it. A configuration whose process
died more than MAX_RETRY times is not retried again (interruptions are the user's and do not
count).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

import optuna
from optuna.trial import FrozenTrial, TrialState

from tunelab.objectives import keys
from tunelab.objectives.runner import INTERRUPTED
from tunelab.search.adapters.storage import ResilientRDBStorage
from tunelab.search.scheduler import lineage
from tunelab.search.scheduler.hosts import owner_gone

MAX_RETRY = 3
"""Retries of a configuration whose process died, before it stays failed."""
DIED = "died"
"""The start of the fail reason of a trial whose worker died."""
STALE = f"{DIED}: heartbeat older than the grace period"
GONE = f"{DIED}: its process is gone"
_log = logging.getLogger(__name__)


def retried_reason(reason: str | None) -> bool:
    """Whether a FAIL trial with this reason is retried (its worker died or was stopped)."""
    return reason == INTERRUPTED or (reason or "").startswith(DIED)


def deaths(chain: Collection[FrozenTrial]) -> int:
    """How many trials of a configuration's chain died."""
    return sum(
        t.state == TrialState.FAIL and (keys.trial_attr(t, keys.FAIL_REASON) or "").startswith(DIED)
        for t in chain
    )


class Recovery:
    """Finds a study's dead trials, ends them and queues their retries."""

    def __init__(
        self,
        study: optuna.Study,
        storage: ResilientRDBStorage | None,
        grace_period: float,
        on_dead: Callable[[FrozenTrial], None] = lambda trial: None,
        me: str = "",
    ) -> None:
        self.study, self.storage, self.grace_period = study, storage, grace_period
        self.on_dead = on_dead
        self.me = me
        """This worker's owner string: its own trials it does not run are dead (their ends
        could not be stored); other workers of this process are alive."""
        """Called with each trial this process ended as dead (e.g. to close its MLflow run)."""

    def sweep(self, running_here: Collection[int] = ()) -> list[int]:
        """End every dead RUNNING trial, then queue the retries owed; returns the trials
        this call ended."""
        if self.storage is None:  # an in-memory study lives and dies with its one process
            return []
        ended = self._end_dead(running_here)
        self.queue_retries()
        return ended

    def _end_dead(self, running_here: Collection[int]) -> list[int]:
        storage, study = self.storage, self.study
        assert storage is not None
        owners = lineage.running_owners(study)
        numbers = {trial_id: number for trial_id, number, _ in owners}
        dead: dict[int, str] = {
            trial_id: GONE
            for trial_id, number, owner in owners
            if owner is not None and owner_gone(owner, running_here, number, self.me)
        }
        if storage.heartbeat_interval and storage.health.healthy_for() >= self.grace_period:
            for trial_id, age in storage.running_heartbeats(study._study_id):
                if age is None:
                    storage.baseline_heartbeat(trial_id)
                elif age > self.grace_period and trial_id in numbers:
                    dead.setdefault(trial_id, STALE)
        ended = []
        for trial_id, reason in dead.items():
            if storage.end_running(trial_id, TrialState.FAIL, {keys.FAIL_REASON: reason}):
                number = numbers[trial_id]
                _log.warning("trial %s %s; it is retried", number, reason.split(": ", 1)[1])
                ended.append(number)
                self.on_dead(storage.get_trial(trial_id))
        return ended

    def queue_retries(self) -> list[int]:
        """Queue the one retry of every FAIL trial that died or was interrupted and has none;
        returns the trials retried now (narrow reads: the unretried failures, their chains)."""
        queued = []
        for trial in lineage.unretried_failures(self.study, (INTERRUPTED, DIED)):
            if not trial.params:  # it died before it had a configuration: nothing to resume
                continue
            reason = keys.trial_attr(trial, keys.FAIL_REASON)
            if reason != INTERRUPTED and deaths(lineage.chain_of(self.study, trial)) > MAX_RETRY:
                continue
            if lineage.queue_successor(self.study, trial, lineage.RETRY):
                queued.append(trial.number)
        return queued
