"""Promotions of paused trials: ASHA's "promote when possible" across workers.

`tunelab.search.halving.PausingHalvingPruner` pauses a trial it cannot promote yet. Whenever a
worker finishes a trial it calls `resume_promotable`: every paused trial that now ranks in the
top 1/rf of its rung gets a continuation (a queued trial with its parameters and curve, which
resumes from its checkpoint), exactly once whichever worker gets there first.
"""

from __future__ import annotations

import time

import optuna
from optuna.trial import FrozenTrial, TrialState

from tunelab.objectives import keys
from tunelab.objectives.checkpoints import CheckpointStore
from tunelab.search.adapters.claims import claim
from tunelab.search.halving import PausingHalvingPruner, rank_at, values_at

KEPT_PAUSED = 20
"""Paused trials whose checkpoints are kept per rung, the best first; the others are given
up (they would need many more competitors to rank in the top third)."""


def paused_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Paused trials that no continuation has picked up."""
    trials = study.get_trials(deepcopy=False)
    resumed = {t.user_attrs.get(keys.RESUME_OF) for t in trials}
    return [
        t
        for t in trials
        if t.state == TrialState.PRUNED
        and t.user_attrs.get(keys.PAUSED_AT) is not None
        and t.number not in resumed
    ]


def _carried(attrs: dict) -> dict:
    """What a continuation inherits from the trial it resumes: not its ending."""
    ended = (keys.PAUSED_AT, keys.FAIL_REASON, keys.RESUMED_AT_STEP)
    return {k: v for k, v in attrs.items() if k not in ended}


def resume_promotable(
    study: optuna.Study,
    pruner: PausingHalvingPruner,
    checkpoints: CheckpointStore | None = None,
) -> list[int]:
    """Queue a continuation of every paused trial that now ranks in the top 1/rf of its
    rung (each exactly once, whichever worker gets there first); give up the checkpoints of
    paused trials ranked below the best KEPT_PAUSED of their rung. Returns the trials resumed."""
    resumed = []
    by_step: dict[int, list[FrozenTrial]] = {}
    for trial in paused_trials(study):
        by_step.setdefault(int(trial.user_attrs[keys.PAUSED_AT]), []).append(trial)
    for step, waiting in by_step.items():
        values = values_at(study, step)
        promotable = len(values) // pruner.reduction_factor
        ranked = sorted(
            waiting, key=lambda t: rank_at(t.intermediate_values[step], values, study.direction)
        )
        for place, trial in enumerate(ranked):
            rank = rank_at(trial.intermediate_values[step], values, study.direction)
            if (
                rank <= promotable
                and pruner.can_finish(trial, step, time.time())
                and claim(study, f"resume-{trial.number}")
            ):
                study.add_trial(
                    optuna.trial.create_trial(
                        state=TrialState.WAITING,
                        params=trial.params,
                        distributions=trial.distributions,
                        user_attrs={**_carried(trial.user_attrs), keys.RESUME_OF: trial.number},
                        intermediate_values=trial.intermediate_values,
                    )
                )
                resumed.append(trial.number)
            elif place >= KEPT_PAUSED and checkpoints is not None:
                checkpoints.remove(trial.number)
    return resumed
