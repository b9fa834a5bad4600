"""Promotions of paused trials: ASHA's "promote when possible" across workers.

`tunelab.search.halving.PausingHalvingPruner` pauses a trial it cannot promote yet. Whenever a
worker finishes a trial it calls `resume_promotable`: every paused trial that now ranks in the
top 1/rf of its rung gets a continuation (a queued trial with its parameters and curve, which
resumes from its checkpoint), exactly once whichever worker gets there first.

At the end of a time budget, when a new configuration could no longer finish (the pruner's
endgame), a worker with nothing queued continues the best paused trial that still can: the
deepest rung first, the best value there. Without it, the few trials that reach the deep rungs
wait for competitors that never come, and only the default configuration completes.
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
    resumed: list[int] = []
    by_step: dict[int, list[FrozenTrial]] = {}
    for trial in paused_trials(study):
        by_step.setdefault(int(trial.user_attrs[keys.PAUSED_AT]), []).append(trial)
    # step -> (trials at the rung, [(rank, paused trial) whose checkpoint is kept, best first])
    kept: dict[int, tuple[int, list[tuple[int, FrozenTrial]]]] = {}
    for step, waiting in by_step.items():
        values = values_at(study, step)
        promotable = len(values) // pruner.reduction_factor
        ranked = sorted(
            ((rank_at(t.intermediate_values[step], values, study.direction), t) for t in waiting),
            key=lambda pair: pair[0],
        )
        kept[step] = (len(values), [])
        for place, (rank, trial) in enumerate(ranked):
            if (
                rank <= promotable
                and pruner.can_finish(trial, step, time.time())
                and claim(study, f"resume-{trial.number}")
            ):
                _queue_continuation(study, trial)
                resumed.append(trial.number)
            elif place >= KEPT_PAUSED and checkpoints is not None:
                checkpoints.remove(trial.number)
            elif place < KEPT_PAUSED:
                kept[step][1].append((rank, trial))
    if not resumed and pruner.in_endgame(time.time()):
        endgame = _endgame_pick(study, pruner, kept)
        if endgame is not None:
            resumed.append(endgame)
    return resumed


def _endgame_pick(
    study: optuna.Study,
    pruner: PausingHalvingPruner,
    kept: dict[int, tuple[int, list[tuple[int, FrozenTrial]]]],
) -> int | None:
    """Continue the best paused trial that can still finish (deepest rung first), unless a
    queued trial already waits for the next free worker. Returns the trial continued."""
    if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        return None
    now = time.time()
    for step in sorted(kept, reverse=True):
        size, candidates = kept[step]
        # the better half only: a trial behind most of its rung is unlikely to be the answer
        contenders = max(1, (size + 1) // 2)
        for rank, trial in candidates:
            if rank > contenders:
                break
            if pruner.can_finish(trial, step, now) and claim(study, f"resume-{trial.number}"):
                _queue_continuation(study, trial)
                return trial.number
    return None


def _queue_continuation(study: optuna.Study, trial: FrozenTrial) -> None:
    """A queued trial with the paused trial's parameters and curve; it resumes from the
    paused trial's checkpoint."""
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={**_carried(trial.user_attrs), keys.RESUME_OF: trial.number},
            intermediate_values=trial.intermediate_values,
        )
    )
