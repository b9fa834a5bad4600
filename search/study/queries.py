"""Reading studies that exist: load one, its stored spec, its summary row, its best trial."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

from tunelab.objectives import keys
from tunelab.search.adapters.storage import check_database, open_storage
from tunelab.search.adapters.tracking import check_tracking_uri
from tunelab.search.spec import SpecError, StudySpec, stored_values

CONNECT_ATTEMPTS_ENV = "TUNELAB_CONNECT_ATTEMPTS"
"""Environment variable: reachability checks a joining worker makes before it gives up."""


def load_study(name: str, storage_url: str) -> optuna.Study:
    """An existing study, or SpecError naming the studies that exist."""
    check_database(storage_url)
    storage = open_storage(storage_url)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = optuna.get_all_study_names(storage)
        known = ", ".join(names) if names else "none"
        raise SpecError(f"no study '{name}' in {storage_url} (studies: {known})") from None


def stored_spec(study: optuna.Study, **overrides: Any) -> StudySpec:
    """The spec saved on a tunelab study, with `overrides` for what a process sets itself."""
    stored = study.user_attrs.get(keys.SPEC)
    if stored is None:
        raise SpecError(f"study '{study.study_name}' was not created by tunelab")
    return StudySpec.from_stored(stored, study_name=study.study_name, **overrides)


def with_retries(check: Callable[[], None], attempts: int | None = None, delay: float = 3.0):
    """Run a reachability check, retrying a bounded number of times (a database or tracking
    server still starting, e.g. in docker compose) before its one-line error stands."""
    attempts = attempts or int(os.environ.get(CONNECT_ATTEMPTS_ENV, "5"))
    for attempt in range(1, attempts + 1):
        try:
            return check()
        except SpecError as error:
            if attempt == attempts or "cannot reach" not in str(error):
                raise
            time.sleep(delay)


def join_spec(name: str, storage_url: str, options: dict[str, Any]) -> StudySpec:
    """The spec of an existing study, as a worker joining it from anywhere runs it: the
    study's own options, with the few a worker sets itself (`options`, None = the study's)."""
    with_retries(lambda: check_database(storage_url))
    study = load_study(name, storage_url)
    options = {**options, "quiet": options.get("quiet") or None}
    spec = stored_spec(study, storage=storage_url, workers=1, **options)
    with_retries(lambda: check_tracking_uri(spec.tracking_uri))
    return spec.validate()


def study_rows(storage_url: str) -> list[dict]:
    """One summary row per study in the storage."""
    check_database(storage_url)
    storage = open_storage(storage_url)
    rows = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        counts = {s: sum(t.state == s for t in trials) for s in TrialState}
        try:
            best = study.best_value
        except ValueError:
            best = None
        spec = stored_values(study.user_attrs.get(keys.SPEC))
        rows.append(
            {
                "name": summary.study_name,
                "task": spec.get("task", "?"),
                "dataset": spec.get("dataset", "?"),
                "metric": study.user_attrs.get(keys.METRIC, "value"),
                "direction": summary.direction.name.lower(),
                "complete": counts[TrialState.COMPLETE],
                "pruned": counts[TrialState.PRUNED],
                "failed": counts[TrialState.FAIL],
                "running": counts[TrialState.RUNNING],
                "target": spec.get("n_trials"),
                "best": best,
            }
        )
    return rows


def best_trial_info(study: optuna.Study) -> dict:
    """The best trial of a study: value, parameters, best epoch, MLflow run."""
    try:
        best = study.best_trial
    except ValueError:
        raise SpecError(f"study '{study.study_name}' has no complete trial yet") from None
    return {
        "study": study.study_name,
        "metric": study.user_attrs.get(keys.METRIC, "value"),
        "direction": study.direction.name.lower(),
        "trial": best.number,
        "value": best.value,
        "params": best.params,
        "best_step": keys.trial_attr(best, keys.BEST_STEP),
        "mlflow_run_id": keys.trial_attr(best, keys.MLFLOW_RUN_ID),
    }
