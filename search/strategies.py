"""Optuna samplers and pruners by name: the one list of what `--sampler` and `--pruner` accept.

Each entry builds a fresh object; Optuna is imported only when one is built. Pruners count in
the study's steps: training images (rungs), or epochs for studies of tunelab 0.1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

    from tunelab.objectives.budget import TrialBudget

TPE_STARTUP_TRIALS = 5
"""Random trials before TPE models the search space (the enqueued default is the first)."""
NSGA2_POPULATION = 16
"""NSGA-II's generation size (multi-objective studies)."""
MEDIAN_STARTUP_TRIALS = 3
"""Trials the median pruner lets finish before it prunes any."""
REDUCTION_FACTOR = 3
"""Successive halving keeps the best third of the trials at each rung."""


def _tpe(seed: int | None) -> optuna.samplers.BaseSampler:
    import optuna

    # multivariate + group: TPE models parameters jointly, conditional ones per group;
    # constant liar: parallel workers do not all sample next to the same running trial.
    return optuna.samplers.TPESampler(
        seed=seed,
        multivariate=True,
        group=True,
        n_startup_trials=TPE_STARTUP_TRIALS,
        constant_liar=True,
    )


def _random(seed: int | None) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _cmaes(seed: int | None) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.CmaEsSampler(seed=seed)


def _gp(seed: int | None) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.GPSampler(seed=seed)


def _qmc(seed: int | None) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.QMCSampler(seed=seed)


def _nsga2(seed: int | None) -> optuna.samplers.BaseSampler:
    import optuna

    # a population of the size of the few dozen trials a tunelab study runs, not 50
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=NSGA2_POPULATION)


SAMPLERS: dict[str, Callable[[int | None], optuna.samplers.BaseSampler]] = {
    "tpe": _tpe,
    "random": _random,
    "cmaes": _cmaes,
    "gp": _gp,
    "qmc": _qmc,
    "nsga2": _nsga2,
}
"""Sampler name -> factory taking the sampler's seed."""


def _median(budget: TrialBudget) -> optuna.pruners.BasePruner:
    import optuna

    # no pruning at the first rung: every trial gets one report before it is judged (Optuna's
    # warm-up ends at its step: it may prune at step n_warmup_steps itself)
    return optuna.pruners.MedianPruner(
        n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=budget.step(1) + 1
    )


def _hyperband(budget: TrialBudget) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.HyperbandPruner(
        min_resource=budget.step(1),
        max_resource=budget.max_step,
        reduction_factor=REDUCTION_FACTOR,
    )


def _asha(budget: TrialBudget) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=budget.step(1), reduction_factor=REDUCTION_FACTOR
    )


def _patient(budget: TrialBudget) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.PatientPruner(_median(budget), patience=2)


def _halving(budget: TrialBudget) -> optuna.pruners.BasePruner:
    import optuna

    # successive halving that pauses is the scheduler's own policy (scheduler/policies.py):
    # Optuna's pruner cannot pause a trial
    return optuna.pruners.NopPruner()


def _none(budget: TrialBudget) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.NopPruner()


PRUNERS: dict[str, Callable[[TrialBudget], optuna.pruners.BasePruner]] = {
    "auto": _hyperband,  # "halving" in studies planned for a time budget: see make_pruner
    "hyperband": _hyperband,
    "halving": _halving,
    "median": _median,
    "asha": _asha,
    "patient": _patient,
    "none": _none,
}
"""Pruner name -> factory taking the study's trial budget."""


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    return SAMPLERS[name](seed)


def make_pruner(name: str, budget: TrialBudget, timed: bool = False) -> optuna.pruners.BasePruner:
    """The Optuna pruner of `--pruner name` for this budget. `auto` is Hyperband, except in a
    study planned for a time budget: there successive halving in one bracket that pauses the
    trials it cannot promote yet (`halving`, the scheduler's policy: no Optuna pruner). With
    the few trials a time budget affords, Hyperband's brackets each hold too few trials to
    compare, and in Optuna's asynchronous halving the first trials to reach a rung are
    promoted unchallenged."""
    if name == "auto" and timed:
        name = "halving"
    return PRUNERS[name](budget)
