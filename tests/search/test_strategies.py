"""search/strategies.py: every `--sampler` and `--pruner` name builds its Optuna object, seeded,
and the pruners judge trials only at the budget's own steps (its rungs)."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from tunelab.objectives.budget import TrialBudget
from tunelab.search.strategies import (
    MEDIAN_STARTUP_TRIALS,
    NSGA2_POPULATION,
    PRUNERS,
    REDUCTION_FACTOR,
    SAMPLERS,
    TPE_STARTUP_TRIALS,
    make_pruner,
    make_sampler,
)

IMAGES = TrialBudget(unit="images", rung=300, max_rungs=9, train_size=1000)
"""Rungs of 300 training images, nine of them: steps 300, 600, ..., 2700."""
EPOCHS = TrialBudget(unit="epochs", rung=1000, max_rungs=9, train_size=1000)
"""A study of tunelab 0.1: one rung per epoch, steps 1, ..., 9."""
BUDGETS = pytest.mark.parametrize("budget", [IMAGES, EPOCHS], ids=["images", "epochs"])

SAMPLER_CLASSES = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "gp": optuna.samplers.GPSampler,
    "qmc": optuna.samplers.QMCSampler,
    "nsga2": optuna.samplers.NSGAIISampler,
}
OPTUNA_PRUNERS = {
    "auto": optuna.pruners.HyperbandPruner,  # without a time budget
    "hyperband": optuna.pruners.HyperbandPruner,
    "median": optuna.pruners.MedianPruner,
    "asha": optuna.pruners.SuccessiveHalvingPruner,
    "patient": optuna.pruners.PatientPruner,
    "none": optuna.pruners.NopPruner,
}
"""Every pruner name but `halving` (tunelab's own: see the last test)."""

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


@pytest.fixture(autouse=True)
def _quiet_optuna():
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(verbosity)


def test_the_tests_know_every_name():
    assert set(SAMPLERS) == set(SAMPLER_CLASSES)
    assert set(PRUNERS) == {*OPTUNA_PRUNERS, "halving"}


@pytest.mark.parametrize("name", sorted(SAMPLER_CLASSES))
def test_every_sampler_name_builds_a_fresh_seeded_sampler(name):
    sampler = make_sampler(name, 7)
    assert type(sampler) is SAMPLER_CLASSES[name]
    assert make_sampler(name, 7) is not sampler  # one per study: samplers keep state

    def first_trials(seed: int) -> list[dict]:
        study = optuna.create_study(sampler=make_sampler(name, seed))
        study.optimize(
            lambda t: t.suggest_float("lr", 1e-4, 1e-1, log=True) + t.suggest_int("width", 8, 64),
            n_trials=3,
        )
        return [t.params for t in study.trials]

    assert first_trials(7) == first_trials(7)  # the seed reaches the sampler


def test_tpe_and_nsga2_are_configured_for_small_parallel_studies():
    tpe = make_sampler("tpe", 0)
    assert tpe._n_startup_trials == TPE_STARTUP_TRIALS
    assert tpe._multivariate and tpe._group and tpe._constant_liar
    assert make_sampler("nsga2", 0).population_size == NSGA2_POPULATION


@pytest.mark.parametrize("name", sorted(OPTUNA_PRUNERS))
@BUDGETS
def test_every_pruner_name_builds_a_fresh_optuna_pruner(name, budget):
    pruner = make_pruner(name, budget)
    assert type(pruner) is OPTUNA_PRUNERS[name]
    assert make_pruner(name, budget) is not pruner
    # a time budget changes only what `auto` means
    if name != "auto":
        assert type(make_pruner(name, budget, timed=True)) is OPTUNA_PRUNERS[name]


def _run_study(pruner, budget: TrialBudget, n_trials: int = 12) -> dict[str, set[int]]:
    """Trials of three qualities (worst first) reporting at every step of the budget. Returns
    the steps at which the pruner recorded a completed rung (Optuna's halving pruners store one
    trial attribute per rung) and those at which it pruned a trial."""
    # a fixed name: Hyperband assigns trials to brackets by a hash of it
    study = optuna.create_study(study_name="strategies", direction="maximize", pruner=pruner)
    seen: dict[str, set[int]] = {"rungs": set(), "pruned": set()}
    for number in range(n_trials):
        trial = study.ask()
        value, state = 0.0, TrialState.COMPLETE
        for rung in range(1, budget.max_rungs + 1):
            step = budget.step(rung)
            value = float(number % 3 + rung)
            trial.report(value, step)
            before = set(study._storage.get_trial(trial._trial_id).system_attrs)
            prune = trial.should_prune()
            if set(study._storage.get_trial(trial._trial_id).system_attrs) - before:
                seen["rungs"].add(step)
            if prune:
                seen["pruned"].add(step)
                state = TrialState.PRUNED
                break
        study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
    return seen


@BUDGETS
def test_the_halving_pruners_rungs_are_the_budgets_steps(budget):
    """Rungs at step(1), then every third rung (reduction factor 3) up to the trial's end."""
    rungs = {budget.step(1), budget.step(3), budget.step(9)}
    assert budget.max_step == budget.step(9)

    asha = make_pruner("asha", budget)
    assert asha._min_resource == budget.step(1) and asha._reduction_factor == REDUCTION_FACTOR
    seen = _run_study(asha, budget)
    assert seen["rungs"] == rungs and seen["pruned"] <= rungs

    hyperband = make_pruner("hyperband", budget)
    assert (hyperband._min_resource, hyperband._max_resource) == (budget.step(1), budget.max_step)
    assert hyperband._reduction_factor == REDUCTION_FACTOR
    seen = _run_study(hyperband, budget)
    assert seen["rungs"] == rungs and seen["pruned"] and seen["pruned"] <= rungs


@BUDGETS
def test_the_median_pruner_waits_for_its_startup_trials_and_judges_at_rungs(budget):
    median = make_pruner("median", budget)
    assert median._n_startup_trials == MEDIAN_STARTUP_TRIALS
    assert median._n_warmup_steps == budget.step(1) + 1  # its own step is past the warm-up

    study = optuna.create_study(direction="maximize", pruner=make_pruner("median", budget))
    for number in range(MEDIAN_STARTUP_TRIALS + 1):
        trial = study.ask()
        trial.report(1.0 if number < MEDIAN_STARTUP_TRIALS else 0.0, budget.step(2))
        pruned = trial.should_prune()
        assert pruned == (number == MEDIAN_STARTUP_TRIALS)  # none before the startup trials
        if pruned:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, 1.0)

    patient = make_pruner("patient", budget)
    assert patient._patience == 2 and type(patient._wrapped_pruner) is optuna.pruners.MedianPruner
    assert patient._wrapped_pruner._n_warmup_steps == budget.step(1) + 1


def test_the_median_pruner_does_not_prune_at_the_first_rung():
    study = optuna.create_study(direction="maximize", pruner=make_pruner("median", IMAGES))
    for _ in range(MEDIAN_STARTUP_TRIALS):
        trial = study.ask()
        trial.report(1.0, IMAGES.step(1))
        study.tell(trial, 1.0)
    trial = study.ask()
    trial.report(0.0, IMAGES.step(1))
    assert not trial.should_prune()


def test_auto_is_hyperband_except_under_a_time_budget_where_it_is_halving(monkeypatch):
    assert type(make_pruner("auto", IMAGES)) is optuna.pruners.HyperbandPruner
    assert type(make_pruner("auto", IMAGES, timed=False)) is optuna.pruners.HyperbandPruner
    built = []
    monkeypatch.setitem(PRUNERS, "halving", lambda budget: built.append(budget) or "halving")
    assert make_pruner("auto", IMAGES, timed=True) == "halving" and built == [IMAGES]


def test_halving_is_the_schedulers_policy_and_no_optuna_pruner():
    """Successive halving that pauses is the scheduler's (scheduler/policies.py, tested in
    tests/search/scheduler/test_policies.py): the study's Optuna pruner prunes nothing."""
    pruner = make_pruner("halving", IMAGES)
    assert type(pruner) is optuna.pruners.NopPruner
    assert make_pruner("halving", IMAGES) is not pruner
    assert type(make_pruner("halving", EPOCHS, timed=True)) is type(pruner)
