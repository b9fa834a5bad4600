"""Reading studies that exist: load one, its stored spec, its summary row, its best trial."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import optuna
from optuna.trial import TrialState

from tunelab.objectives import keys
from tunelab.objectives.budget import TrialBudget
from tunelab.search.adapters.storage import check_database, open_storage, shown_url
from tunelab.search.adapters.tracking import check_tracking_uri
from tunelab.search.adapters.transient import retrying
from tunelab.search.scheduler import lineage
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
from tunelab.search.study.summary import BY_THE_PRUNER, INTERRUPTED, counted, position

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
        where = shown_url(storage_url)
        raise SpecError(f"no study '{name}' in {where} (studies: {known})") from None


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


def study_budget(study: optuna.Study) -> TrialBudget | None:
    """The trial budget recorded on a study (None: a study of tunelab 0.1 or not tunelab's),
    read without the planning machinery (and torch) that wrote it."""
    text = study.user_attrs.get(keys.BUDGET)
    if not text:
        return None
    try:
        return TrialBudget(**json.loads(text)["budget"])
    except (ValueError, KeyError, TypeError):  # a record of another version: no rungs shown
        return None


def _reached(trial: optuna.trial.FrozenTrial) -> int | None:
    """The last step a trial trained to: recorded when complete, else its last rung."""
    recorded = keys.trial_attr(trial, keys.STEPS_RUN)
    if recorded is not None:
        return int(recorded)
    rungs = trial.user_attrs.get(keys.RUNG_SCORES, {})  # a multi-objective trial's rungs
    return max([*trial.intermediate_values, *map(int, rungs)], default=None)


def _state_name(trial: optuna.trial.FrozenTrial) -> str:
    if lineage.is_paused(trial):
        return "paused"
    if trial.state == TrialState.FAIL and keys.trial_attr(trial, keys.FAIL_REASON) == INTERRUPTED:
        return "interrupted"
    return {TrialState.COMPLETE: "complete", TrialState.FAIL: "failed"}.get(
        trial.state, trial.state.name.lower()
    )


def _reason(trial: optuna.trial.FrozenTrial, state: str, unit: str) -> str | None:
    """Why the trial ended as it did, in full (the summary groups these)."""
    recorded = keys.trial_attr(trial, keys.FAIL_REASON)
    if recorded:
        return str(recorded)
    if state == "complete":
        if trial.user_attrs.get(keys.STOPPED_AT_DEADLINE):
            return "ended by the time budget"
        if keys.trial_attr(trial, keys.EARLY_STOPPED):
            return "early-stopped"
        return None
    if state == "paused":
        return f"paused by successive halving at {position(lineage.paused_at(trial), unit)}"
    if state == "pruned":
        return BY_THE_PRUNER
    return None


def _duration(trial: optuna.trial.FrozenTrial, now: datetime.datetime) -> float | None:
    if trial.datetime_start is None:
        return None
    end = trial.datetime_complete or (now if trial.state == TrialState.RUNNING else None)
    return None if end is None else round((end - trial.datetime_start).total_seconds(), 3)


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """Every trial of a study, as `tunelab trials` and the report list them: state, value
    (the objectives of a multi-objective study), parameters, why it ended, duration, the
    step and rung it reached, and its lineage (the trial it retries or continues, and the
    trials that retried or continued it)."""
    trials = study.get_trials(deepcopy=False)
    names = objective_names(study)
    budget = study_budget(study)
    retried = lineage.successors(trials, lineage.RETRY)
    continued = lineage.successors(trials, lineage.CONTINUATION)
    now = datetime.datetime.now()
    rows = []
    for trial in trials:
        state = _state_name(trial)
        unit = "epochs" if budget is None else budget.unit
        reached = _reached(trial)
        rung = None
        if reached is not None and budget is not None:
            rung = reached // budget.rung if budget.unit == "images" else reached
        values = None
        if trial.values is not None:
            values = dict(zip(names, trial.values, strict=False))
        rows.append(
            {
                "trial": trial.number,
                "state": state,
                "value": primary_value(trial) if trial.values else None,
                "values": values,
                "params": trial.params,
                "reason": _reason(trial, state, unit),
                "duration_s": _duration(trial, now),
                "reached_step": reached,
                "rung": rung,
                "max_rungs": None if budget is None else budget.max_rungs,
                "unit": unit,
                "configuration": lineage.root(trial),
                "retry_of": lineage.retry_of(trial),
                "continues": lineage.resume_of(trial),
                "resumed_at_step": lineage.resumed_at(trial) or None,
                "retried_by": retried.get(trial.number),
                "continued_by": continued.get(trial.number),
                "default": lineage.is_default(trial),
                "mlflow_run_id": keys.trial_attr(trial, keys.MLFLOW_RUN_ID),
            }
        )
    return rows


def reached_text(row: dict[str, Any]) -> str:
    """Where a trial's training got to, in words: 'rung 2/10 (2,514 images)'."""
    step = row["reached_step"]
    if step is None:
        return "-"
    where = f"epoch {step}" if row["unit"] == "epochs" else counted(step, "image")
    if row["rung"] is None or row["unit"] == "epochs":
        return where if row["max_rungs"] is None else f"{where}/{row['max_rungs']}"
    return f"rung {row['rung']}/{row['max_rungs']} ({where})"


def lineage_text(row: dict[str, Any]) -> str:
    """A trial's links to the other trials of its configuration, in words."""
    parts = []
    if row["retry_of"] is not None:
        parts.append(f"retries {row['retry_of']}")
    if row["continues"] is not None:
        parts.append(f"continues {row['continues']}")
    if row["resumed_at_step"]:
        parts.append(f"from step {row['resumed_at_step']:,}")
    if row["retried_by"] is not None:
        parts.append(f"retried by {row['retried_by']}")
    if row["continued_by"] is not None:
        parts.append(f"continued by {row['continued_by']}")
    if row["default"] and row["retry_of"] is None and row["continues"] is None:
        parts.append("default configuration")
    return ", ".join(parts)


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return (
        f"{minutes // 60}:{minutes % 60:02d}:{rest:02d}"
        if minutes >= 60
        else f"{minutes}:{rest:02d}"
    )
