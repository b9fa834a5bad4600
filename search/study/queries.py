"""Reading studies that exist: load one, its stored spec, its summary row, its best trial."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import optuna
from optuna.trial import TrialState

from tunelab.objectives import keys
from tunelab.search.adapters.storage import check_database, open_storage
from tunelab.search.adapters.tracking import check_tracking_uri
from tunelab.search.adapters.transient import retrying
from tunelab.search.spec import (
    MASKED_PASSWORD,
    TRACKING_ENV,
    SpecError,
    StudySpec,
    check_study_name,
    stored_values,
    with_password_of,
)
from tunelab.search.study.pareto import (
    best_primary,
    directions,
    front_rows,
    is_multi,
    objective_names,
    primary_direction,
    primary_value,
)

CONNECT_ATTEMPTS_ENV = "TUNELAB_CONNECT_ATTEMPTS"
"""Environment variable: reachability checks a joining worker makes before it gives up."""


def load_study(name: str, storage_url: str) -> optuna.Study:
    """An existing study, or SpecError naming the studies that exist."""
    check_study_name(name)
    check_database(storage_url, existing=True)
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
    spec = StudySpec.from_stored(stored, study_name=study.study_name, **overrides)
    return dataclasses.replace(spec, tracking_uri=tracking_uri_of(spec))


def tracking_uri_of(spec: StudySpec) -> str:
    """The study's tracking URI with its password: a study stores it masked, and a process
    that reads the study brings it, in --tracking-uri / $MLFLOW_TRACKING_URI or, for runs in
    the same database server as the study, in its storage URL."""
    uri = spec.tracking_uri
    if urlsplit(uri).password != MASKED_PASSWORD:
        return uri
    restored = with_password_of(uri, spec.storage)
    if restored is None:
        raise SpecError(
            f"the study's tracking URI {uri} needs its password: give the URI with "
            f"--tracking-uri or ${TRACKING_ENV}"
        )
    return restored


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
    check_study_name(name)
    with_retries(lambda: check_database(storage_url))
    study = retrying(lambda: load_study(name, storage_url))  # a database restarting
    options = {**options, "quiet": options.get("quiet") or None}
    spec = stored_spec(study, storage=storage_url, workers=1, **options)
    with_retries(lambda: check_tracking_uri(spec.tracking_uri))
    return spec.validate()


def study_rows(storage_url: str) -> list[dict]:
    """One summary row per study in the storage."""
    check_database(storage_url, existing=True)
    storage = open_storage(storage_url)
    rows = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        counts = {s: sum(t.state == s for t in trials) for s in TrialState}
        best_trial = best_primary(study)  # multi-objective: the front's best primary
        best = None if best_trial is None else primary_value(best_trial)
        spec = stored_values(study.user_attrs.get(keys.SPEC))
        rows.append(
            {
                "name": summary.study_name,
                "task": spec.get("task", "?"),
                "dataset": spec.get("dataset", "?"),
                "metric": ",".join(objective_names(study)),
                "direction": ",".join(directions(study)),
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
    best = best_primary(study)
    if best is None:
        raise SpecError(f"study '{study.study_name}' has no complete trial yet") from None
    info = {
        "study": study.study_name,
        "metric": study.user_attrs.get(keys.METRIC, "value"),
        "direction": primary_direction(study),
        "trial": best.number,
        "value": primary_value(best),
        "params": best.params,
        "best_step": keys.trial_attr(best, keys.BEST_STEP),
        "mlflow_run_id": keys.trial_attr(best, keys.MLFLOW_RUN_ID),
    }
    if is_multi(study):  # the front, the best primary first (that is "the best" above)
        info["objectives"] = objective_names(study)
        info["directions"] = directions(study)
        info["front"] = front_rows(study)
    return info
