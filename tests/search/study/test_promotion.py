"""Promotion of paused trials: once they rank, each resumes exactly once across workers."""

from __future__ import annotations

import time

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from tunelab.objectives import keys
from tunelab.search.halving import PausingHalvingPruner
from tunelab.search.study.promotion import paused_trials, resume_promotable

STEP = 512


def _trial(study, value, *, paused=False, lr=0.01):
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.PRUNED,
            params={"lr": lr},
            distributions={"lr": FloatDistribution(1e-4, 1.0, log=True)},
            intermediate_values={STEP: value},
            user_attrs={keys.PAUSED_AT: STEP} if paused else {},
        )
    )


def test_a_paused_trial_that_now_ranks_resumes_once_whichever_worker_sees_it(storage_url):
    study = optuna.create_study(study_name="s", storage=storage_url, direction="maximize")
    _trial(study, 0.85, paused=True, lr=0.02)  # trial 0: paused when it had no competitors
    _trial(study, 0.45, paused=True)  # trial 1: will not rank
    for value in (0.8, 0.7, 0.6, 0.5, 0.4):
        _trial(study, value)
    pruner = PausingHalvingPruner(min_resource=STEP, reduction_factor=3)
    workers = [optuna.load_study(study_name="s", storage=storage_url) for _ in range(2)]

    resumed = [resume_promotable(w, pruner) for w in workers]

    assert sorted(resumed, key=len) == [[], [0]]
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1
    continuation = waiting[0]
    assert continuation.user_attrs[keys.RESUME_OF] == 0
    assert keys.PAUSED_AT not in continuation.user_attrs  # its own ending is not inherited
    assert continuation.params == {"lr": 0.02}
    assert continuation.intermediate_values == {STEP: 0.85}  # it continues its curve
    assert [t.number for t in paused_trials(study)] == [1]


def test_a_promotion_waits_while_the_trial_does_not_rank(storage_url):
    study = optuna.create_study(study_name="s", storage=storage_url, direction="minimize")
    _trial(study, 0.9, paused=True)
    _trial(study, 0.1)
    _trial(study, 0.2)
    assert resume_promotable(study, PausingHalvingPruner(STEP, 3)) == []
    assert not study.get_trials(states=(TrialState.WAITING,))


def _endgame_pruner(full_trial_s: float) -> PausingHalvingPruner:
    """A pruner 100 s before its deadline, for trials that trained STEP steps in no time."""
    pruner = PausingHalvingPruner(STEP, 3, max_step=4 * STEP, deadline=time.time() + 100)
    pruner.full_trial_s = full_trial_s
    return pruner


def test_in_the_endgame_the_best_paused_trial_continues_though_its_rung_is_small(storage_url):
    study = optuna.create_study(study_name="s", storage=storage_url, direction="maximize")
    _trial(study, 0.9)  # the default configuration, continued
    _trial(study, 0.7, paused=True)  # 2 of 3: not in the top third, yet the better half
    _trial(study, 0.5, paused=True)
    assert resume_promotable(study, _endgame_pruner(full_trial_s=30)) == []  # not the endgame

    assert resume_promotable(study, _endgame_pruner(full_trial_s=500)) == [1]
    # one at a time: the next free worker takes the queued one before another is queued
    assert resume_promotable(study, _endgame_pruner(full_trial_s=500)) == []
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs[keys.RESUME_OF] for t in waiting] == [1]


def test_in_the_endgame_a_trial_behind_most_of_its_rung_stays_paused(storage_url):
    study = optuna.create_study(study_name="s", storage=storage_url, direction="maximize")
    for value in (0.9, 0.8, 0.7):
        _trial(study, value)
    _trial(study, 0.1, paused=True)
    assert resume_promotable(study, _endgame_pruner(full_trial_s=500)) == []
