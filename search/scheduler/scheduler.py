"""The trial scheduler: what a trial does at each rung, and what a worker does between trials.

Shaped like Ray Tune's `TrialScheduler`: `on_trial_result` answers continue, pause or stop at
every rung; `choose_trial_to_run` says what a free worker does next: run a trial (a queued
retry or continuation first, else a new configuration), wait (other workers' running trials
stand between the study and its target), or stop (the target is reached, or the time budget
is spent). Before choosing, it recovers the study's dead trials (recovery.py) and queues the
continuations of paused trials that rank again (the policy's `promote`), so that every worker,
whenever it is free, finishes what others left. The deadline, the target and the policy are
given when it is built.
"""

from __future__ import annotations

import random
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

import optuna
from optuna.trial import TrialState

from tunelab.objectives.checkpoints import CheckpointStore
from tunelab.objectives.session import CONTINUE, Ruling
from tunelab.objectives.training import TrialTraining
from tunelab.search.adapters.storage import rdb_of
from tunelab.search.multiobjective import StudyReports
from tunelab.search.scheduler.policies import RungPolicy, RungReport
from tunelab.search.scheduler.recovery import Recovery

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
SWEEPS_PER_ROUND = 4
"""Between trials a worker sweeps for dead trials with probability SWEEPS_PER_ROUND / (running
trials), so that the study as a whole sweeps about this many times per round of its trials,
however many workers it has: a sweep reads every running trial's owner and heartbeat, and
every worker sweeping after every trial would read the study's running trials N times per
round (a load that grows with the square of the workers). A worker's first look always sweeps:
a rerun after a crash ends its dead trials at once."""
FIRST_POLL_S = 1.0
"""A waiting worker looks again after this long, then less often, up to the heartbeat
interval, with jitter: many waiting workers do not poll the database in step."""


@dataclass(frozen=True)
class Next:
    """What a free worker does."""

    action: Literal["run", "wait", "stop"]
    reason: str = ""
    """Why (for `stop`: in the worker's last line)."""


def state_counts(study: optuna.Study) -> dict[TrialState, int]:
    """The study's trials per state."""
    storage = rdb_of(study)
    if storage is not None:
        return storage.state_counts(study._study_id)
    counts: dict[TrialState, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state] = counts.get(trial.state, 0) + 1
    return counts


def count_finished(study: optuna.Study) -> int:
    """The study's finished (complete + pruned) trials."""
    counts = state_counts(study)
    return sum(counts.get(s, 0) for s in FINISHED_STATES)


class TrialScheduler:
    """Decides, for one worker, at every rung and between trials (see the module)."""

    def __init__(
        self,
        study: optuna.Study,
        policy: RungPolicy,
        reports: StudyReports,
        recovery: Recovery,
        target: int | None = None,
        trials_end: float | None = None,
        rung_seconds: float = 0.0,
        checkpoints: CheckpointStore | None = None,
    ) -> None:
        self.study, self.policy, self.reports, self.recovery = study, policy, reports, recovery
        self.target = target
        """Finished trials the study is done at (None: as many as its time budget allows)."""
        self.trials_end = trials_end
        """When trials stop training (time.time()): no trial starts within a rung of it."""
        self.rung_seconds = rung_seconds
        """About how long one rung takes on one worker."""
        self.checkpoints = checkpoints
        self._running = 0  # the running trials at the last look: how often to sweep

    # -- between trials ------------------------------------------------------------------

    def choose_trial_to_run(self, running_here: Collection[int] = ()) -> Next:
        """Recover dead trials (now and then: SWEEPS_PER_ROUND), promote paused ones, then say
        what a free worker does."""
        if random.random() < SWEEPS_PER_ROUND / max(1, self._running):
            self.recovery.sweep(running_here)
        # spent before promoting: a continuation queued now would be left waiting
        spent = self.trials_end is not None and time.time() + self.rung_seconds >= self.trials_end
        if not spent:
            self.policy.promote(self.study, self.checkpoints)
        counts = state_counts(self.study)
        self._running = counts.get(TrialState.RUNNING, 0)
        finished = sum(counts.get(s, 0) for s in FINISHED_STATES)
        if self.target is not None and finished >= self.target:
            return Next("stop", f"the study holds its {self.target} finished trials")
        if spent:
            return Next("stop", "the time budget is spent")
        waiting, running = counts.get(TrialState.WAITING, 0), counts.get(TrialState.RUNNING, 0)
        if waiting or self.target is None or finished + running < self.target:
            return Next("run")
        return Next("wait", f"{running} running trial(s) may reach the target")

    def poll_waits(self, longest_s: float):
        """The waits of a worker with nothing to run: growing, with jitter."""
        wait = FIRST_POLL_S
        while True:
            yield wait * random.uniform(0.8, 1.2)
            wait = min(longest_s, wait * 1.5)

    # -- a running trial -----------------------------------------------------------------

    def on_trial_start(self, trial: optuna.trial.BaseTrial, training: TrialTraining, recorder):
        """The model is built: the study's static metrics and constraints (may raise
        TrialStopped, infeasible)."""
        self.reports.start(trial, training, recorder)

    def on_trial_result(
        self,
        trial: optuna.trial.BaseTrial,
        step: int,
        scores: Mapping[str, float],
        *,
        root: int,
        reference: bool,
        trained_s: float,
        trained_steps: int,
    ) -> Ruling:
        """A rung's scores: reported to the study, then continue, pause or stop. A reference
        trial (the default configuration, an anchor) always continues."""
        point = self.reports.report(trial, step, scores)
        if reference:
            return CONTINUE
        report = RungReport(
            trial=trial,
            root=root,
            step=step,
            point=point,
            value=float(scores[self.reports.metric]),
            trained_s=trained_s,
            trained_steps=trained_steps,
        )
        return self.policy.decide(self.study, report)

    def on_trial_complete(self, trial, value: float, scores: Mapping[str, float], recorder):
        """What the complete trial returns to the study."""
        return self.reports.result(trial, value, scores, recorder)
