"""The end-of-search summary: configurations counted once per chain, the default beside the best."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from tunelab.objectives import keys
from tunelab.search.study.summary import SearchSummary


def _add(study, state, value=None, curve=None, **attrs):
    study.add_trial(
        optuna.trial.create_trial(
            state=state,
            value=value,
            intermediate_values=curve or {},
            user_attrs=attrs,
        )
    )


def test_chains_count_once_in_the_state_of_their_last_trial():
    study = optuna.create_study(direction="maximize")
    _add(study, TrialState.COMPLETE, 0.90, {1: 0.8}, **{keys.DEFAULT_TRIAL: True})  # 0
    _add(study, TrialState.PRUNED, None, {1: 0.85}, **{keys.PAUSED_AT: 1})  # 1: paused,
    _add(study, TrialState.COMPLETE, 0.93, {1: 0.85, 2: 0.9}, **{keys.ORIGINAL_TRIAL: 1})  # resumed
    _add(study, TrialState.PRUNED, None, {1: 0.2})  # 3
    _add(study, TrialState.PRUNED, None, {1: 0.5}, **{keys.PAUSED_AT: 1})  # 4
    _add(study, TrialState.FAIL)  # 5: failed before its first rung

    summary = SearchSummary.of(study)

    assert (summary.configurations, summary.past_first_rung) == (5, 4)
    assert (summary.complete, summary.pruned, summary.paused, summary.failed) == (2, 1, 1, 1)
    assert summary.best.number == 2 and summary.default.number == 0
    assert summary.counts().startswith("5 configurations tried (4 past their first rung)")
    assert summary.against_default("val_accuracy") == (
        "+0.03 val_accuracy over the default configuration (trial 0: 0.9)"
    )


def test_the_best_can_be_the_default():
    study = optuna.create_study(direction="minimize")
    _add(study, TrialState.COMPLETE, 1.0, **{keys.DEFAULT_TRIAL: True})
    _add(study, TrialState.PRUNED, None, {1: 3.0})
    summary = SearchSummary.of(study)
    assert summary.against_default("val_loss") == (
        "the best is the default configuration (trial 0)"
    )
