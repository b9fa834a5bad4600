"""Rung policies: successive halving that pauses (levels, ranks, the deadline rule), the
promotion of paused trials exactly once across workers, the endgame, and Optuna's pruners."""

from __future__ import annotations

import datetime
import time

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from tunelab.objectives.budget import TrialBudget
from tunelab.objectives.session import Verdict
from tunelab.search.adapters.storage import open_storage
from tunelab.search.scheduler import lineage
from tunelab.search.scheduler.policies import (
    Halving,
    NoPruning,
    OptunaPruning,
    ParetoHalving,
    RungReport,
    decision_level,
    make_policy,
    rank_at,
)

STEP = 512
LR = {"lr": FloatDistribution(1e-4, 1.0, log=True)}


def _study(url, direction):
    """The study "s" through tunelab's storage, created or loaded (one handle per worker)."""
    return optuna.create_study(
        study_name="s", storage=open_storage(url), direction=direction, load_if_exists=True
    )


def _trial(study, value, *, paused=False, lr=0.01, state=TrialState.PRUNED):
    """A finished trial that reported `value` at STEP, paused there if asked (as the worker
    stores a pause: the lineage's record, then PRUNED)."""
    study.enqueue_trial({"lr": lr})
    trial = study.ask(LR)
    trial.report(value, STEP)
    if paused:
        lineage.record_pause(trial, STEP)
    study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
    return study.trials[-1]


def _report(study, value, step=STEP, trained_s=1.0, trained_steps=STEP):
    trial = study.ask(LR)
    trial.report(value, step)
    return RungReport(trial, trial.number, step, {"v": value}, value, trained_s, trained_steps)


def test_decision_levels_are_min_resource_times_powers_of_the_factor():
    assert [decision_level(s, STEP, 3) for s in (STEP, 3 * STEP, 9 * STEP)] == [0, 1, 2]
    assert [decision_level(s, STEP, 3) for s in (STEP // 2, 2 * STEP, 4 * STEP)] == [None] * 3


def test_rank_counts_strictly_better_values_in_the_study_direction():
    values = [0.9, 0.8, 0.8, 0.5]
    assert rank_at(0.8, values, optuna.study.StudyDirection.MAXIMIZE) == 2
    assert rank_at(0.8, values, optuna.study.StudyDirection.MINIMIZE) == 2
    assert rank_at(0.5, values, optuna.study.StudyDirection.MINIMIZE) == 1


@pytest.mark.parametrize(
    ("value", "verdict"),
    [(0.95, Verdict.CONTINUE), (0.75, Verdict.PAUSE), (float("nan"), Verdict.STOP)],
)
def test_a_trial_continues_only_in_the_top_third_of_its_rung_else_it_pauses(value, verdict):
    study = optuna.create_study(direction="maximize")
    for other in (0.9, 0.8, 0.7, 0.6, 0.5):
        _trial(study, other)
    ruling = Halving(STEP, 3).decide(study, _report(study, value))
    assert ruling.verdict is verdict  # a diverged value is pruned, not paused


def test_steps_between_decision_levels_never_stop_a_trial():
    study = optuna.create_study(direction="maximize")
    assert Halving(STEP, 3).decide(study, _report(study, 0.0, step=2 * STEP)).verdict is (
        Verdict.CONTINUE
    )


def test_a_continuation_repeats_its_sources_curve_and_counts_once(storage_url):
    study = optuna.create_study(
        study_name="s", storage=open_storage(storage_url), direction="maximize"
    )
    paused = _trial(study, 0.5, paused=True)
    assert lineage.queue_successor(study, paused, lineage.CONTINUATION)
    continuation = study.ask(LR)  # it carries its source's curve
    study.tell(continuation, state=TrialState.PRUNED)
    _trial(study, 0.7)
    assert sorted(lineage.rung_values(study, STEP).values()) == [0.5, 0.7]


def test_under_a_deadline_only_a_configuration_that_can_finish_is_promoted():
    study = optuna.create_study(direction="maximize")
    for other in (0.1, 0.2, 0.3, 0.4, 0.5):
        _trial(study, other)
    # STEP steps in 10 s; 9 * STEP more to go take 90 s
    slow = _report(study, 0.9, trained_s=10.0, trained_steps=STEP)
    late = Halving(STEP, 3, max_step=10 * STEP, deadline=time.time() + 50)
    assert late.decide(study, slow).verdict is Verdict.PAUSE
    early = Halving(STEP, 3, max_step=10 * STEP, deadline=time.time() + 200)
    assert early.decide(study, slow).verdict is Verdict.CONTINUE
    assert Halving(STEP, 3, max_step=10 * STEP).decide(study, slow).verdict is Verdict.CONTINUE


def test_once_no_new_configuration_could_finish_a_promoted_trial_trains_to_the_deadline():
    study = optuna.create_study(direction="maximize")
    for other in (0.1, 0.2, 0.3, 0.4, 0.5):
        _trial(study, other)
    slow = _report(study, 0.9, trained_s=10.0, trained_steps=STEP)  # 90 s to go, 50 s left
    policy = Halving(STEP, 3, max_step=10 * STEP, deadline=time.time() + 50)
    policy.fastest_images_per_s = 10 * STEP / 40  # the fastest seen: a whole trial in 40 s
    assert policy.decide(study, slow).verdict is Verdict.PAUSE  # a fast new one could finish
    policy.fastest_images_per_s = 10 * STEP / 60
    assert policy.decide(study, slow).verdict is Verdict.CONTINUE
    # outside the top third it pauses all the same
    assert policy.decide(study, _report(study, 0.15, trained_s=10.0)).verdict is Verdict.PAUSE


# -- promotions ---------------------------------------------------------------------------------


def test_a_paused_trial_that_now_ranks_resumes_once_whichever_worker_sees_it(storage_url):
    study = optuna.create_study(
        study_name="s", storage=open_storage(storage_url), direction="maximize"
    )
    _trial(study, 0.85, paused=True, lr=0.02)  # trial 0: paused when it had no competitors
    _trial(study, 0.45, paused=True)  # trial 1: will not rank
    for value in (0.8, 0.7, 0.6, 0.5, 0.4):
        _trial(study, value)
    workers = [
        optuna.load_study(study_name="s", storage=open_storage(storage_url)) for _ in range(2)
    ]

    resumed = [Halving(STEP, 3).promote(w, None) for w in workers]

    assert sorted(resumed, key=len) == [[], [0]]
    (continuation,) = study.get_trials(states=(TrialState.WAITING,))
    assert lineage.resume_of(continuation) == 0 and lineage.root(continuation) == 0
    assert lineage.paused_at(continuation) is None  # its own ending is not inherited
    assert continuation.params == {"lr": 0.02}
    assert continuation.intermediate_values == {STEP: 0.85}  # it continues its curve
    assert lineage.checkpoint_sources(continuation) == (0,)


def test_a_promotion_waits_while_the_trial_does_not_rank(storage_url):
    study = optuna.create_study(
        study_name="s", storage=open_storage(storage_url), direction="minimize"
    )
    _trial(study, 0.9, paused=True)
    _trial(study, 0.1)
    _trial(study, 0.2)
    assert Halving(STEP, 3).promote(study, None) == []
    assert not study.get_trials(states=(TrialState.WAITING,))


def _endgame(full_trial_s: float) -> Halving:
    """A policy 100 s before its deadline, for trials that trained STEP steps in no time."""
    return Halving(
        STEP, 3, max_step=4 * STEP, deadline=time.time() + 100, full_trial_s=full_trial_s
    )


def test_in_the_endgame_the_best_paused_trial_continues_though_its_rung_is_small(storage_url):
    study = optuna.create_study(
        study_name="s", storage=open_storage(storage_url), direction="maximize"
    )
    _trial(study, 0.9)  # the default configuration, continued
    _trial(study, 0.7, paused=True)  # 2 of 3: not in the top third, yet the better half
    _trial(study, 0.5, paused=True)
    assert _endgame(full_trial_s=30).promote(study, None) == []  # not the endgame

    assert _endgame(full_trial_s=500).promote(study, None) == [1]
    # one at a time: the next free worker takes the queued one before another is queued
    assert _endgame(full_trial_s=500).promote(study, None) == []
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [lineage.resume_of(t) for t in waiting] == [1]


def test_in_the_endgame_a_trial_behind_most_of_its_rung_stays_paused(storage_url):
    study = optuna.create_study(
        study_name="s", storage=open_storage(storage_url), direction="maximize"
    )
    for value in (0.9, 0.8, 0.7):
        _trial(study, value)
    _trial(study, 0.1, paused=True)
    assert _endgame(full_trial_s=500).promote(study, None) == []


def _slow_trial(study, value, seconds, paused=True):
    """A trial that trained STEP steps in `seconds`, paused there (as the worker stores a
    pause) or complete."""
    trial = optuna.trial.create_trial(
        params={"lr": 0.01},
        distributions=LR,
        value=None if paused else value,
        intermediate_values={STEP: value},
        user_attrs={"tunelab.paused_at": STEP} if paused else {},
        state=TrialState.PRUNED if paused else TrialState.COMPLETE,
    )
    trial.datetime_start = trial.datetime_complete - datetime.timedelta(seconds=seconds)
    study.add_trial(trial)
    return study.trials[-1]


@pytest.mark.parametrize("fast_trial_seen", [True, False])
def test_at_the_endgames_end_the_best_paused_trial_continues_though_it_cannot_finish(
    storage_url, fast_trial_seen
):
    study = optuna.create_study(
        study_name="s", storage=open_storage(storage_url), direction="maximize"
    )
    _slow_trial(study, 0.9, seconds=60, paused=False)
    # STEP in 60 s: 3 * STEP more take 180 s, 100 s are left
    slow = _slow_trial(study, 0.7, seconds=60)
    _slow_trial(study, 0.5, seconds=60)
    assert not _endgame(full_trial_s=500).can_finish(slow, STEP, time.time())
    if fast_trial_seen:  # a configuration this fast could still finish: none is continued
        _trial(study, 0.1)
        assert _endgame(full_trial_s=500).promote(study, None) == []
    else:  # none seen could: the better one trains on to the deadline
        assert _endgame(full_trial_s=500).promote(study, None) == [slow.number]


# -- choosing the policy ------------------------------------------------------------------------


def test_the_pruner_name_chooses_the_policy():
    from tunelab.objectives.metrics import MetricInfo
    from tunelab.search.multiobjective import StudyObjectives

    budget = TrialBudget(unit="images", rung=STEP, max_rungs=9, train_size=STEP * 3)
    assert isinstance(make_policy("none", budget, None, timed=True), NoPruning)
    assert isinstance(make_policy("auto", budget, None, timed=False), OptunaPruning)
    halving = make_policy("auto", budget, None, timed=True, deadline=123.0, full_trial_s=9.0)
    assert isinstance(halving, Halving)
    assert (halving.min_resource, halving.max_step, halving.deadline) == (STEP, 9 * STEP, 123.0)
    two = StudyObjectives(
        metrics=(MetricInfo("a", "maximize"), MetricInfo("b", "minimize", static=True))
    )
    assert isinstance(make_policy("auto", budget, two, timed=True), ParetoHalving)
    assert isinstance(make_policy("none", budget, two, timed=True), NoPruning)
