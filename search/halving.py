"""Successive halving with paused trials: ASHA as its paper states it, thanks to checkpoints.

Asynchronous successive halving decides at rungs of min_resource * rf**k steps. Optuna's
version cannot suspend a trial, so it decides at once against the trials that reached the rung
so far, and the first trials to arrive, having no competitors, are promoted to the end
unchallenged: under a short time budget those few trials take most of it. tunelab can suspend a
trial, because every rung leaves a checkpoint. At every decision rung a trial continues only
while it ranks in the top 1/rf of the trials that reached the rung; otherwise it is paused: it
ends PRUNED with `tunelab.paused_at`, its checkpoint kept, and `tunelab.search.study.promotion`
resumes it once it ranks in the top 1/rf (ASHA's "promote when possible, else start a new
configuration"). The task's default configuration is never stopped (see the loop), so every
rung has a competitor that goes to the end and the search always has a complete trial.

Under a time budget (`deadline`), a trial is promoted only if, at the speed it trained so far,
it can finish its whole budget (`max_step`) before the deadline: a configuration that cannot
finish cannot be the search's answer, and its worker is better spent on new configurations.
Once a new configuration could no longer finish either (`full_trial_s` before the deadline),
the promotion module lets the best paused trials that still can finish go on regardless of
their rung's size: the time is better spent completing them than starting configurations that
can only be paused.
"""

from __future__ import annotations

import math
import time

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from tunelab.objectives import keys


def _better(a: float, b: float, direction: StudyDirection) -> bool:
    return a > b if direction == StudyDirection.MAXIMIZE else a < b


def rank_at(value: float, values: list[float], direction: StudyDirection) -> int:
    """1 for the best of `values` (which holds `value` itself)."""
    return 1 + sum(_better(v, value, direction) for v in values)


class PausingHalvingPruner(optuna.pruners.BasePruner):
    """Successive halving that pauses a trial it cannot promote yet (see the module)."""

    def __init__(
        self,
        min_resource: int,
        reduction_factor: int,
        max_step: int | None = None,
        deadline: float | None = None,
    ) -> None:
        self.min_resource = min_resource
        self.reduction_factor = reduction_factor
        self.max_step = max_step
        """The step at which a trial's budget ends."""
        self.deadline = deadline
        """Wall-clock end of the time budget (time.time()), if any."""
        self.full_trial_s: float | None = None
        """Estimated seconds a new configuration needs for its whole budget (None: unknown)."""
        self.paused: dict[int, int] = {}
        """Trials this process paused: trial number -> step (read once by the loop)."""

    def level(self, step: int) -> int | None:
        """The decision level of a step (0 for min_resource), None between levels."""
        ratio = step / self.min_resource
        level = round(math.log(ratio, self.reduction_factor)) if ratio >= 1 else -1
        return (
            level
            if level >= 0 and self.min_resource * self.reduction_factor**level == step
            else None
        )

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        level = None if step is None else self.level(step)
        if level is None:
            return False
        value = trial.intermediate_values[step]
        if not math.isfinite(value):
            return True
        values = values_at(study, step)
        ranked = rank_at(value, values, study.direction) <= len(values) // self.reduction_factor
        if ranked and self.can_finish(trial, step, time.time()):
            return False
        self.paused[trial.number] = step  # ends the trial, keeping its checkpoint
        return True

    def can_finish(self, trial: FrozenTrial, step: int, now: float) -> bool:
        """Whether, at the speed its trial trained from its start to `step`, the configuration
        reaches the end of its budget before the deadline (True without a deadline)."""
        if self.deadline is None or self.max_step is None or trial.datetime_start is None:
            return True
        trained = step - int(trial.user_attrs.get(keys.RESUMED_AT_STEP, 0))
        ended = trial.datetime_complete.timestamp() if trial.datetime_complete else now
        seconds = ended - trial.datetime_start.timestamp()
        if trained <= 0 or seconds <= 0:
            return True
        return now + (self.max_step - step) * seconds / trained <= self.deadline

    def in_endgame(self, now: float) -> bool:
        """Whether a configuration started now could no longer finish before the deadline."""
        if self.deadline is None or self.full_trial_s is None:
            return False
        return now + self.full_trial_s > self.deadline

    def take_pause(self, trial_number: int) -> int | None:
        """The step this process paused the trial at (once), or None if it was pruned."""
        return self.paused.pop(trial_number, None)


def values_at(study: optuna.Study, step: int) -> list[float]:
    """The values every trial reported at `step` (a continuation repeats its source's curve:
    counted once)."""
    seen: dict[int, float] = {}
    for t in study.get_trials(deepcopy=False):
        if step in t.intermediate_values:
            seen[root(t)] = t.intermediate_values[step]
    return list(seen.values())


def root(trial: FrozenTrial) -> int:
    """The configuration's own trial: the first of its chain of continuations and retries."""
    return int(trial.user_attrs.get(keys.ORIGINAL_TRIAL, trial.number))
