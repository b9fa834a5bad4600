"""A trial's lineage: the one record of where a trial comes from and where it went.

A configuration may train over several Optuna trials: a trial whose worker died or was
interrupted is *retried* (a queued trial that resumes from its checkpoint), a trial paused by
successive halving is *continued* when it ranks again. These trials form a chain whose first
trial is the configuration's *root*; each later one names its *source*. The record lives in
trial user attributes (optuna-dashboard shows them) and this module is the only code that reads
or writes them (tests/test_architecture.py checks it): the chain (root, retry of, continuation
of), the pause, the checkpoint a trial resumed from and at which step, the owner, and the marks
of the reference trials (the task's default configuration, its anchors) that are never pruned.

Queueing a retry or a continuation is exactly once across workers: in the transaction that
creates it, under the study's lock (the storage's `create_guarded`), a worker checks that the
source has no successor of that kind yet. A worker that dies in between leaves nothing written
and the lock released: the next worker that looks does it. There is no claim that could outlive
its holder.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.orm
from optuna.trial import FrozenTrial, TrialState

from tunelab.objectives import keys
from tunelab.search.adapters.storage import rdb_of
from tunelab.search.adapters.transient import retrying
from tunelab.search.launch.environment import batch_job

_ROOT = "tunelab.original_trial"
"""On every later trial of a chain: the configuration's own (first) trial."""
_RETRY_OF = "tunelab.retry_of"
"""On a retry of an interrupted or dead trial: that trial's number."""
_RESUME_OF = "tunelab.resume_of"
"""On the continuation of a paused trial: that trial's number."""
_PAUSED_AT = "tunelab.paused_at"
"""The step at which successive halving paused the trial (PRUNED, its checkpoint kept)."""
_RESUMED_FROM = "tunelab.resumed_from_trial"
"""The trial whose checkpoint this trial's training took up (carried to its own retry, so a
retry of a trial that died before saving still finds that checkpoint)."""
_RESUMED_AT = "tunelab.resumed_at_step"
"""The step at which the trial took up its source's training."""
_OWNER = "tunelab.owner"
"""The process running the trial (`hosts.process_owner`)."""
_JOB = "tunelab.batch_job"
"""The batch job of the process running the trial (`launch.environment.batch_job`: Slurm's job,
array task and restart count), where it runs in one."""
_DEFAULT = "tunelab.default_trial"
"""On the task's default configuration, queued first in every study."""
_ANCHOR = "tunelab.anchor_trial"
"""On a configuration the task asked to train right after the default
(`Task.anchor_configurations`), e.g. the smallest model of a study with a size objective."""
_LEGACY = {_RESUMED_FROM: "resumed_from_trial"}
"""Names of tunelab 0.1."""
_LEGACY_NUMBER = "tunelab.trial_number"
"""Written by tunelab 0.2 on every trial (its own number): a trial that found another number
there was a retry Optuna made of that trial."""

RETRY_OF_TRIAL_TAG = "tunelab.retry_of_trial"
"""MLflow tag on the run of a retry or continuation: its configuration's root trial."""
RESUMED_AT_STEP_TAG = _RESUMED_AT
"""MLflow tag on the run of a trial that took up a checkpoint: the step."""
PAUSED_AT_TAG = _PAUSED_AT
"""MLflow tag on the run of a paused trial: the step."""

RETRY, CONTINUATION = "retry", "continuation"
"""The two kinds of successor a trial can have."""
_SUCCESSOR_KEY = {RETRY: _RETRY_OF, CONTINUATION: _RESUME_OF}
_NOT_CARRIED = (
    _OWNER,
    _JOB,
    _PAUSED_AT,
    _RESUMED_AT,
    _RETRY_OF,
    _RESUME_OF,
    _LEGACY_NUMBER,
    keys.FAIL_REASON,
    keys.MLFLOW_RUN_ID,
)
"""What a successor does not inherit from its source: how and where that one ended."""


def _attr(trial: Any, key: str) -> Any:
    attrs = trial.user_attrs
    if key in attrs:
        return attrs[key]
    return attrs.get(_LEGACY.get(key, key))


def _number(value: Any) -> int | None:
    return None if value is None else int(value)


# -- reading a trial's record -----------------------------------------------------------------


def root(trial: Any) -> int:
    """The configuration's own trial: the first of its chain."""
    return int(_attr(trial, _ROOT) if _attr(trial, _ROOT) is not None else trial.number)


def retry_of(trial: Any) -> int | None:
    """The interrupted or dead trial this one retries (a tunelab 0.2 retry made by Optuna
    named it by the number it carried)."""
    found = _number(_attr(trial, _RETRY_OF))
    if found is None:
        carried = _number(trial.user_attrs.get(_LEGACY_NUMBER))
        found = carried if carried is not None and carried != trial.number else None
    return found


def resume_of(trial: Any) -> int | None:
    """The paused trial this one continues."""
    return _number(_attr(trial, _RESUME_OF))


def source(trial: Any) -> int | None:
    """The trial this one takes up (a retry's or a continuation's source)."""
    found = retry_of(trial)
    return found if found is not None else resume_of(trial)


def paused_at(trial: Any) -> int | None:
    """The step successive halving paused the trial at (None: not paused)."""
    return _number(_attr(trial, _PAUSED_AT))


def is_paused(trial: FrozenTrial) -> bool:
    """A PRUNED trial that was paused, not pruned: a continuation may take it up."""
    return trial.state == TrialState.PRUNED and paused_at(trial) is not None


def resumed_at(trial: Any) -> int:
    """The step the trial's training took up its source's (0: from scratch)."""
    return int(_attr(trial, _RESUMED_AT) or 0)


def resumed_from(trial: Any) -> int | None:
    """The trial whose checkpoint the trial took up."""
    return _number(_attr(trial, _RESUMED_FROM))


def owner(trial: Any) -> str | None:
    """The process running (or that ran) the trial."""
    return _attr(trial, _OWNER)


def is_default(trial: Any) -> bool:
    """The task's default configuration (or a retry or continuation of it)."""
    return bool(_attr(trial, _DEFAULT))


def is_reference(trial: Any) -> bool:
    """Trained to its end whatever its rungs say: the default configuration (the search's
    baseline, so that a search never ends worse than the defaults) and the anchors (e.g. a
    size objective's ladder: the front's reference points)."""
    return is_default(trial) or bool(_attr(trial, _ANCHOR))


def is_anchor(trial: Any) -> bool:
    return bool(_attr(trial, _ANCHOR))


def chains(trials: Iterable[FrozenTrial]) -> dict[int, list[FrozenTrial]]:
    """Trials grouped by configuration: root -> its trials, in order."""
    found: dict[int, list[FrozenTrial]] = {}
    for trial in sorted(trials, key=lambda t: t.number):
        found.setdefault(root(trial), []).append(trial)
    return found


def checkpoint_sources(trial: Any) -> tuple[int, ...]:
    """The checkpoints a trial may resume from, the nearest first: its source's, then the one
    its source had resumed from (when the source died before saving its own)."""
    found = []
    for candidate in (source(trial), resumed_from(trial)):
        if candidate is not None and candidate not in found and candidate != trial.number:
            found.append(candidate)
    return tuple(found)


def run_tags(trial: Any) -> dict[str, str]:
    """MLflow tags naming the lineage of a trial that starts."""
    if source(trial) is None:
        return {}
    return {RETRY_OF_TRIAL_TAG: str(root(trial))}


# -- writing ----------------------------------------------------------------------------------


def default_marks() -> dict[str, Any]:
    """User attributes of the queued default configuration."""
    return {_DEFAULT: True}


def anchor_marks() -> dict[str, Any]:
    """User attributes of a queued anchor configuration."""
    return {_ANCHOR: True}


def owner_attrs(process: str, job: Mapping[str, str] | None = None) -> dict[str, Any]:
    """User attributes that make a trial `process`'s, written as it becomes RUNNING: the
    process, and the batch job it runs in (`job`; by default this process's own, from its
    environment: none outside a batch job)."""
    if job is None:
        job = batch_job()
    return {_OWNER: process, **({_JOB: dict(job)} if job else {})}


def record_pause(trial: optuna.trial.BaseTrial, step: int) -> dict[str, str]:
    """Mark the trial paused at `step`; returns the MLflow tags saying so."""
    trial.set_user_attr(_PAUSED_AT, step)
    return {PAUSED_AT_TAG: str(step)}


def record_resume(trial: optuna.trial.BaseTrial, source_number: int, step: int) -> dict[str, str]:
    """Mark the trial as having taken up `source_number`'s checkpoint at `step`; returns the
    MLflow tags saying so."""
    trial.set_user_attr(_RESUMED_FROM, int(source_number))
    trial.set_user_attr(_RESUMED_AT, int(step))
    return {_RESUMED_FROM: str(source_number), RESUMED_AT_STEP_TAG: str(step)}


def _successor_attrs(trial: FrozenTrial, kind: str) -> dict[str, Any]:
    attrs = {k: v for k, v in trial.user_attrs.items() if k not in _NOT_CARRIED}
    # Written now, not when the successor starts: one killed before it started must still
    # belong to its configuration's chain, and still find the checkpoint its source resumed
    # from (a retry of a retry that died before saving).
    attrs[_ROOT] = root(trial)
    # the checkpoint the source resumed from, or would have (it may have died before)
    earlier = resumed_from(trial) if resumed_from(trial) is not None else source(trial)
    if earlier is not None:
        attrs[_RESUMED_FROM] = earlier
    attrs[_SUCCESSOR_KEY[kind]] = trial.number
    return attrs


def _successor_query(study_id: int, number: int, kind: str):
    from optuna.storages._rdb import models  # Optuna's own table definitions

    trial, attr = models.TrialModel, models.TrialUserAttributeModel
    return (
        sqlalchemy.select(attr.trial_id)
        .join(trial, trial.trial_id == attr.trial_id)
        .where(
            trial.study_id == study_id,
            attr.key == _SUCCESSOR_KEY[kind],
            attr.value_json == json.dumps(number),
        )
        .limit(1)
    )


def has_successor(study: optuna.Study, number: int, kind: str) -> bool:
    """Whether trial `number` already has a successor of `kind` (one narrow read)."""
    storage = rdb_of(study)
    if storage is None:  # an in-memory study: its trials are at hand
        key = _SUCCESSOR_KEY[kind]
        return any(t.user_attrs.get(key) == number for t in study.get_trials(deepcopy=False))
    with storage.engine.connect() as connection:
        return (
            connection.execute(_successor_query(study._study_id, number, kind)).first() is not None
        )


class _HasSuccessor(Exception):
    """The source has its successor already (another worker queued it first)."""


def queue_successor(study: optuna.Study, trial: FrozenTrial, kind: str) -> bool:
    """Queue the one retry or continuation of `trial` (exactly once across workers); False
    when it has one already. It carries the trial's parameters, curve and attributes, and
    resumes from its checkpoint."""
    successor = optuna.trial.create_trial(
        state=TrialState.WAITING,
        params=trial.params,
        distributions=trial.distributions,
        user_attrs=_successor_attrs(trial, kind),
        intermediate_values=trial.intermediate_values,
    )
    storage = rdb_of(study)
    if storage is None:  # an in-memory study lives in one process: nothing to guard
        if has_successor(study, trial.number, kind):
            return False
        study.add_trial(successor)
        return True

    def none_yet(session, study_id: int) -> None:
        if session.execute(_successor_query(study_id, trial.number, kind)).first() is not None:
            raise _HasSuccessor

    try:
        # the check and the insert in one transaction under the study's lock: again whole
        # after a cut commit (the retry then finds the successor the first attempt wrote)
        retrying(lambda: storage.create_guarded(study, successor, none_yet))
    except _HasSuccessor:
        return False
    return True


def successors(trials: Iterable[FrozenTrial], kind: str) -> dict[int, int]:
    """source number -> its successor's number, for successors of `kind` among `trials`."""
    key = _SUCCESSOR_KEY[kind]
    return {int(t.user_attrs[key]): t.number for t in trials if t.user_attrs.get(key) is not None}


def rung_values(study: optuna.Study, step: int) -> dict[int, float]:
    """The value each configuration reported at `step`, by root (a continuation repeats its
    source's curve: counted once). One narrow read of the step's values and the roots."""
    storage = rdb_of(study)
    if storage is None:
        seen: dict[int, float] = {}
        for t in study.get_trials(deepcopy=False):
            if step in t.intermediate_values:
                seen[root(t)] = t.intermediate_values[step]
        return seen
    from optuna.storages._rdb import models  # Optuna's own table definitions

    trial, value = models.TrialModel, models.TrialIntermediateValueModel
    attr = models.TrialUserAttributeModel
    query = (
        sqlalchemy.select(
            trial.number, attr.value_json, value.intermediate_value, value.intermediate_value_type
        )
        .join(value, value.trial_id == trial.trial_id)
        .outerjoin(attr, (attr.trial_id == trial.trial_id) & (attr.key == _ROOT))
        .where(trial.study_id == study._study_id, value.step == step)
    )
    with storage.engine.connect() as connection:
        rows = connection.execute(query).all()
    return {
        (int(json.loads(root_json)) if root_json else number): (
            value.stored_repr_to_intermediate_value(stored, kind)
        )
        for number, root_json, stored, kind in rows
    }


def running_owners(study: optuna.Study) -> list[tuple[int, int, str | None]]:
    """(trial id, number, owner) of every RUNNING trial (one narrow read)."""
    storage = rdb_of(study)
    if storage is None:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return [(t._trial_id, t.number, owner(t)) for t in running]
    from optuna.storages._rdb import models

    trial, attr = models.TrialModel, models.TrialUserAttributeModel
    query = (
        sqlalchemy.select(trial.trial_id, trial.number, attr.value_json)
        .outerjoin(attr, (attr.trial_id == trial.trial_id) & (attr.key == _OWNER))
        .where(trial.study_id == study._study_id, trial.state == TrialState.RUNNING)
    )
    with storage.engine.connect() as connection:
        rows = connection.execute(query).all()
    return [(tid, number, json.loads(value) if value else None) for tid, number, value in rows]


def unretried_failures(study: optuna.Study, reasons: Iterable[str]) -> list[FrozenTrial]:
    """The FAIL trials whose fail reason starts with one of `reasons` and that have no retry
    (a narrow read: usually none)."""
    prefixes = tuple(reasons)
    storage = rdb_of(study)
    if storage is None:
        trials = study.get_trials(deepcopy=False)
        retried = successors(trials, RETRY)
        return [
            t
            for t in trials
            if t.state == TrialState.FAIL
            and t.number not in retried
            and str(t.user_attrs.get(keys.FAIL_REASON, "")).startswith(prefixes)
        ]
    from optuna.storages._rdb import models

    trial, attr = models.TrialModel, models.TrialUserAttributeModel
    retry = sqlalchemy.orm.aliased(attr)
    has_retry = (
        sqlalchemy.select(retry.trial_id)
        .join(models.TrialModel, models.TrialModel.trial_id == retry.trial_id)
        .where(
            models.TrialModel.study_id == study._study_id,
            retry.key == _RETRY_OF,
            retry.value_json == sqlalchemy.cast(trial.number, sqlalchemy.String),
        )
        .exists()
    )
    query = (
        sqlalchemy.select(trial.trial_id, attr.value_json)
        .join(attr, (attr.trial_id == trial.trial_id) & (attr.key == keys.FAIL_REASON))
        .where(trial.study_id == study._study_id, trial.state == TrialState.FAIL, ~has_retry)
    )
    with storage.engine.connect() as connection:
        rows = connection.execute(query).all()
    ids = [tid for tid, reason in rows if str(json.loads(reason)).startswith(prefixes)]
    return [study._storage.get_trial(tid) for tid in ids]


def chain_of(study: optuna.Study, trial: FrozenTrial) -> list[FrozenTrial]:
    """Every trial of `trial`'s configuration (a narrow read of the chain, not of the study)."""
    first = root(trial)
    storage = rdb_of(study)
    if storage is None:
        return chains(study.get_trials(deepcopy=False)).get(first, [trial])
    from optuna.storages._rdb import models

    t, attr = models.TrialModel, models.TrialUserAttributeModel
    query = (
        sqlalchemy.select(t.trial_id)
        .outerjoin(attr, (attr.trial_id == t.trial_id) & (attr.key == _ROOT))
        .where(
            t.study_id == study._study_id,
            (t.number == first) | (attr.value_json == json.dumps(first)),
        )
        .order_by(t.number)
    )
    with storage.engine.connect() as connection:
        ids = list(connection.execute(query).scalars())
    return [study._storage.get_trial(tid) for tid in ids]
