"""The end-of-search summary: configurations counted once per chain, the default beside the best."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from tunelab.objectives import keys
from tunelab.search.scheduler import lineage
from tunelab.search.study.summary import (
    INTERRUPTED,
    SearchSummary,
    counted,
    position,
    reason_kind,
)


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
    _add(study, TrialState.COMPLETE, 0.90, {1: 0.8}, **lineage.default_marks())  # 0
    _add(study, TrialState.PRUNED, None, {1: 0.85}, **{lineage._PAUSED_AT: 1})  # 1: paused,
    _add(study, TrialState.COMPLETE, 0.93, {1: 0.85, 2: 0.9}, **{lineage._ROOT: 1})  # resumed
    _add(study, TrialState.PRUNED, None, {1: 0.2})  # 3
    _add(study, TrialState.PRUNED, None, {1: 0.5}, **{lineage._PAUSED_AT: 1})  # 4
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
    _add(study, TrialState.COMPLETE, 1.0, **lineage.default_marks())
    _add(study, TrialState.PRUNED, None, {1: 3.0})
    summary = SearchSummary.of(study)
    assert summary.against_default("val_loss") == (
        "the best is the default configuration (trial 0)"
    )


def test_reasons_are_counted_without_what_varies_between_trials():
    study = optuna.create_study(direction="maximize")
    _add(study, TrialState.COMPLETE, 0.9, {1: 0.9}, **lineage.default_marks())
    for epoch in (1, 2):  # the same reason at two epochs, with two values
        _add(
            study,
            TrialState.PRUNED,
            None,
            **{keys.FAIL_REASON: f"non-finite train_loss (nan) in epoch {epoch}"},
        )
    _add(study, TrialState.PRUNED, None, {1: 0.1})  # the pruner's decision: no reason recorded
    _add(study, TrialState.PRUNED, None, {1: 0.5}, **{lineage._PAUSED_AT: 1})
    for _ in range(3):
        _add(study, TrialState.FAIL, **{keys.FAIL_REASON: "RuntimeError: boom"})
    _add(study, TrialState.FAIL, **{keys.FAIL_REASON: "interrupted"})

    summary = SearchSummary.of(study)

    assert summary.reason_lines() == [
        "3 failed: RuntimeError: boom",
        "2 pruned: non-finite train_loss",
        "1 interrupted",
        "1 paused by successive halving",
        "1 pruned by the pruner",
    ]
    assert (summary.failed, summary.pruned, summary.paused) == (4, 3, 1)
    assert summary.diverged_count == 2 and not summary.diverged  # one completed


def test_a_search_diverged_when_every_configuration_that_ended_diverged():
    study = optuna.create_study(direction="maximize")
    reason = {keys.FAIL_REASON: "non-finite val_loss (inf) in epoch 1"}
    _add(study, TrialState.PRUNED, None, **lineage.default_marks(), **reason)
    _add(study, TrialState.PRUNED, None, **reason)
    _add(study, TrialState.FAIL, **{keys.FAIL_REASON: "RuntimeError: boom"})  # says why itself
    summary = SearchSummary.of(study)
    assert summary.diverged
    assert summary.diverged_line().startswith(
        "the search diverged: all 2 configurations that ended stopped on non-finite val_loss"
    )
    # a configuration pruned by the pruner, or out of memory, is no divergence
    _add(study, TrialState.PRUNED, None, {1: 0.1})
    assert not SearchSummary.of(study).diverged
    oom = optuna.create_study()
    _add(oom, TrialState.PRUNED, None, **{keys.FAIL_REASON: "out_of_memory"})
    assert not SearchSummary.of(oom).diverged


def test_reason_kinds_and_counts():
    assert reason_kind("non-finite train_loss (nan) in epoch 3") == "non-finite train_loss"
    assert reason_kind("non-finite value at step 2,514") == "non-finite value"
    assert reason_kind("mode collapse: generated per-pixel std is 0.01 of ...") == "mode collapse"
    assert reason_kind("infeasible before training: breaks params<=10 (params = 99)") == (
        "infeasible before training"
    )
    assert reason_kind("RuntimeError: mat1 and mat2 shapes (64x64 and 100x10)") == (
        "RuntimeError: mat1 and mat2 shapes"
    )
    assert [counted(n, "epoch") for n in (0, 1, 2)] == ["0 epochs", "1 epoch", "2 epochs"]
    assert counted(1257, "training image") == "1,257 training images"
    assert position(2514, "images") == "2,514 training images"
    assert position(3, "epochs") == "epoch 3"


def test_the_interrupted_reason_is_the_loops_own():
    from tunelab.objectives import runner

    assert INTERRUPTED == runner.INTERRUPTED
