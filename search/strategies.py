"""Optuna samplers and pruners by name: the one list of what `--sampler` and `--pruner` accept.

Each entry builds a fresh object; Optuna is imported only when one is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

TPE_STARTUP_TRIALS = 5
"""Random trials before TPE models the search space (the enqueued default is the first)."""
MEDIAN_STARTUP_TRIALS = 3
"""Trials the median pruner lets finish before it prunes any."""


def _tpe(seed: int | None) -> optuna.samplers.BaseSampler:
    import optuna

    # multivariate + group: TPE models parameters jointly, conditional ones per group.
    return optuna.samplers.TPESampler(
        seed=seed, multivariate=True, group=True, n_startup_trials=TPE_STARTUP_TRIALS
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


SAMPLERS: dict[str, Callable[[int | None], optuna.samplers.BaseSampler]] = {
    "tpe": _tpe,
    "random": _random,
    "cmaes": _cmaes,
    "gp": _gp,
    "qmc": _qmc,
}
"""Sampler name -> factory taking the sampler's seed."""


def _median(max_epochs: int) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=1)


def _hyperband(max_epochs: int) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.HyperbandPruner(
        min_resource=1, max_resource=max_epochs, reduction_factor=3
    )


def _asha(max_epochs: int) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)


def _patient(max_epochs: int) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.PatientPruner(_median(max_epochs), patience=2)


def _none(max_epochs: int) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.NopPruner()


PRUNERS: dict[str, Callable[[int], optuna.pruners.BasePruner]] = {
    "hyperband": _hyperband,
    "median": _median,
    "asha": _asha,
    "patient": _patient,
    "none": _none,
}
"""Pruner name -> factory taking the trial's epoch budget."""


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    return SAMPLERS[name](seed)


def make_pruner(name: str, max_epochs: int) -> optuna.pruners.BasePruner:
    return PRUNERS[name](max_epochs)
