"""Trials that did not end on their own: dead workers' trials and interrupted ones, retried.

A trial records its owner, the process running it (`host[pid namespace]:pid:start`). A trial
whose owner is gone is failed and retried: at once when the owner ran on this host (its
process no longer exists), otherwise once its heartbeat is older than the grace period. A
trial ended by Ctrl-C or SIGTERM is FAIL with reason `interrupted`; the next run of the study
(or another worker of it) retries it. Every
retry resumes from the trial's last rung checkpoint and is queued exactly once, whichever of
several workers sees the trial first (a claim); a configuration whose process died
MAX_RETRY + 1 times is not retried again (interruptions are the user's and do not count).
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from tunelab.objectives import keys
from tunelab.search.adapters.claims import claim
from tunelab.search.adapters.tracking import StudyTracker

MAX_RETRY = 3
"""Retries of a configuration whose process died, before it stays failed."""
INTERRUPTED = "interrupted"
NOT_CARRIED = (keys.OWNER, keys.FAIL_REASON, keys.PAUSED_AT, keys.RESUMED_AT_STEP)
"""What a retry does not inherit from the trial it retries: how and where that one ended."""


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ("0" where /proc has none): a pid
    reused by another process has another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "0"
    return stat.rsplit(")", 1)[1].split()[19]


def _machine() -> str:
    """This host and pid namespace: containers with host networking share a host name, but
    not their pids."""
    try:
        namespace = os.readlink("/proc/self/ns/pid").removeprefix("pid:")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}{namespace}"


def process_owner(pid: int | None = None) -> str:
    """`host[pid namespace]:pid:start` of a process (this one by default)."""
    pid = os.getpid() if pid is None else pid
    return f"{_machine()}:{pid}:{_start_time(pid)}"


def owner_gone(owner: str, running_here: set[int], number: int) -> bool:
    """Whether the owner of trial `number` is certainly gone: a process of this host that
    no longer exists (or whose pid now belongs to another process), or this very process when
    it is not running that trial (its end could not be stored). Owners on other hosts are left
    to the heartbeat."""
    machine, _, rest = owner.partition(":")
    pid_text, _, start = rest.partition(":")
    if machine != _machine() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return number not in running_here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return _start_time(pid) != start


def _chain(study: optuna.Study, trial: FrozenTrial) -> list[FrozenTrial]:
    root = int(trial.user_attrs.get(keys.ORIGINAL_TRIAL, trial.number))
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if int(t.user_attrs.get(keys.ORIGINAL_TRIAL, t.number)) == root
    ]


def queue_retry(study: optuna.Study, trial: FrozenTrial, reason: str) -> bool:
    """Queue the one retry of a failed trial (exactly once across workers); False when another
    worker did, or the configuration died too often. The retry carries the trial's parameters,
    curve and attributes, and resumes from its checkpoint."""
    if reason != INTERRUPTED:
        deaths = sum(
            t.state == TrialState.FAIL and keys.trial_attr(t, keys.FAIL_REASON) in (None, reason)
            for t in _chain(study, trial)
        )
        if deaths > MAX_RETRY:
            return False
    if not claim(study, f"retry-{trial.number}"):
        return False
    attrs = {k: v for k, v in trial.user_attrs.items() if k not in NOT_CARRIED}
    # Written here, not only when the retry starts: a retry killed before it started must
    # still belong to its configuration's chain (or MAX_RETRY would restart at each death),
    # and still find the checkpoint its own source resumed from.
    attrs[keys.ORIGINAL_TRIAL] = int(trial.user_attrs.get(keys.ORIGINAL_TRIAL, trial.number))
    earlier = trial.user_attrs.get(keys.RESUMED_FROM_TRIAL, trial.user_attrs.get(keys.RETRY_OF))
    if earlier is not None:
        attrs[keys.RESUMED_FROM_TRIAL] = int(earlier)
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={**attrs, keys.TRIAL_NUMBER: trial.number, keys.RETRY_OF: trial.number},
            intermediate_values=trial.intermediate_values,
        )
    )
    return True


class DeadTrialHandler:
    """A trial whose process died (found by its stale heartbeat or its gone owner), already
    FAIL: close its MLflow run as FAILED (tagged recovered) and queue its retry."""

    def __init__(self) -> None:
        self.tracker: StudyTracker | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        run_id = keys.trial_attr(trial, keys.MLFLOW_RUN_ID)
        if self.tracker is not None and run_id:
            self.tracker.fail_dead_run(run_id)
        queue_retry(study, trial, "died")


def reclaim_orphans(
    study: optuna.Study, on_dead: DeadTrialHandler, running_here: set[int] = frozenset()
) -> list[int]:
    """Fail (and retry) every RUNNING trial whose owner is certainly gone (see owner_gone),
    without waiting for its heartbeat; returns their numbers. Exactly one process wins each
    trial: the storage refuses to end a trial that is no longer RUNNING."""
    storage = study._storage  # Optuna fails stale trials through it the same way
    reclaimed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get(keys.OWNER)
        if owner is None or not owner_gone(owner, set(running_here), trial.number):
            continue
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            if storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                on_dead(study, storage.get_trial(trial._trial_id))
                reclaimed.append(trial.number)
    return reclaimed


def requeue_interrupted(study: optuna.Study) -> list[int]:
    """Queue a retry of every trial ended by Ctrl-C / SIGTERM that has none yet; the retry
    resumes from the interrupted trial's last rung checkpoint."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get(keys.RETRY_OF) for t in trials}
    return [
        trial.number
        for trial in trials
        if trial.state == TrialState.FAIL
        and keys.trial_attr(trial, keys.FAIL_REASON) == INTERRUPTED
        and trial.number not in retried
        and queue_retry(study, trial, INTERRUPTED)
    ]


CONSECUTIVE_FAILURES = 3
"""A worker whose last this many trials failed stops: a sign of a systematic error."""


class WorkerGaveUp(RuntimeError):
    """Several trials in a row failed in this worker; the message says why."""


class FailureStreak:
    """study.optimize callback: counts this worker's failed trials in a row and stops the
    study loop after CONSECUTIVE_FAILURES (each failure stays that trial's own until then)."""

    def __init__(self, limit: int = CONSECUTIVE_FAILURES) -> None:
        self.limit = limit
        self.streak = 0
        self.last_reason: str | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state != TrialState.FAIL:
            self.streak = 0
            return
        self.streak += 1
        self.last_reason = keys.trial_attr(trial, keys.FAIL_REASON)
        if self.streak >= self.limit:
            study.stop()

    def check(self) -> None:
        """Raise WorkerGaveUp when the streak stopped the loop."""
        if self.streak >= self.limit:
            raise WorkerGaveUp(
                f"{self.streak} trials in a row failed (the last: {self.last_reason}); this "
                "worker stops: see the trials' tunelab.fail_reason"
            )
