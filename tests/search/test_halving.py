"""Successive halving that pauses: decision levels, ranking, pausing, the deadline rule."""

from __future__ import annotations

import datetime as dt

import optuna
import pytest
from optuna.trial import TrialState

from tunelab.objectives import keys
from tunelab.search.halving import PausingHalvingPruner, rank_at, values_at

STEP = 512


def _finished(study: optuna.Study, value: float, **attrs) -> None:
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.PRUNED, intermediate_values={STEP: value}, user_attrs=attrs
        )
    )


def _reporting(study: optuna.Study, value: float) -> optuna.trial.FrozenTrial:
    trial = study.ask()
    trial.report(value, STEP)
    return study._storage.get_trial(trial._trial_id)


def test_decision_levels_are_min_resource_times_powers_of_the_factor():
    pruner = PausingHalvingPruner(min_resource=STEP, reduction_factor=3)
    assert [pruner.level(s) for s in (STEP, 3 * STEP, 9 * STEP)] == [0, 1, 2]
    assert [pruner.level(s) for s in (STEP // 2, 2 * STEP, 4 * STEP)] == [None, None, None]


def test_rank_counts_strictly_better_values_in_the_study_direction():
    values = [0.9, 0.8, 0.8, 0.5]
    assert rank_at(0.8, values, optuna.study.StudyDirection.MAXIMIZE) == 2
    assert rank_at(0.8, values, optuna.study.StudyDirection.MINIMIZE) == 2
    assert rank_at(0.5, values, optuna.study.StudyDirection.MINIMIZE) == 1


@pytest.mark.parametrize(("value", "paused"), [(0.95, False), (0.75, True), (float("nan"), None)])
def test_a_trial_continues_only_in_the_top_third_of_its_rung_else_it_is_paused(value, paused):
    pruner = PausingHalvingPruner(min_resource=STEP, reduction_factor=3)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for other in (0.9, 0.8, 0.7, 0.6, 0.5):
        _finished(study, other)
    trial = _reporting(study, value)
    stops = pruner.prune(study, trial)
    assert stops is (paused is not False)
    # a pause keeps the trial's checkpoint for a later promotion; a diverged value is pruned
    assert pruner.take_pause(trial.number) == (STEP if paused else None)
    assert pruner.take_pause(trial.number) is None  # read once


def test_steps_between_decision_levels_never_stop_a_trial():
    pruner = PausingHalvingPruner(min_resource=STEP, reduction_factor=3)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    trial = study.ask()
    trial.report(0.0, 2 * STEP)
    assert not pruner.prune(study, study._storage.get_trial(trial._trial_id))


def test_a_continuation_repeats_its_sources_curve_and_counts_once():
    study = optuna.create_study(direction="maximize")
    _finished(study, 0.5)
    _finished(study, 0.5, **{keys.ORIGINAL_TRIAL: 0})
    _finished(study, 0.7)
    assert sorted(values_at(study, STEP)) == [0.5, 0.7]


def test_under_a_deadline_only_a_configuration_that_can_finish_is_promoted():
    now = 1_000_000.0
    trial = optuna.trial.create_trial(state=TrialState.RUNNING, intermediate_values={100: 0.5})
    trial.datetime_start = dt.datetime.fromtimestamp(now - 10)  # 100 steps in 10 s
    pruner = PausingHalvingPruner(STEP, 3, max_step=1000, deadline=now + 50)
    assert not pruner.can_finish(trial, 100, now)  # 900 more steps take 90 s
    assert PausingHalvingPruner(STEP, 3, max_step=1000, deadline=now + 200).can_finish(
        trial, 100, now
    )
    assert PausingHalvingPruner(STEP, 3, max_step=1000).can_finish(trial, 100, now)
