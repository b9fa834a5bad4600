"""Running a study: create or resume it, then optimize to its total trial target.

`prepare` (prepare.py) has checked every input; `run_study` creates or resumes the study and
optimizes until it holds `n_trials` finished (complete + pruned) trials, counted across every
process that works on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from tunelab.objectives import keys
from tunelab.objectives.checkpoints import LocalCheckpoints
from tunelab.objectives.runner import LoopConfig, Objective
from tunelab.search.adapters.storage import open_storage
from tunelab.search.adapters.tracking import StudyTracker
from tunelab.search.spec import SpecError
from tunelab.search.strategies import make_pruner, make_sampler
from tunelab.search.study.prepare import Prepared
from tunelab.search.study.progress import StudyProgress
from tunelab.search.study.recovery import DeadTrialHandler, requeue_interrupted, retry_callback

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
WORKER_SEED_STRIDE = 7919
"""Worker i samples with seed + WORKER_SEED_STRIDE * i: a prime, so workers' sampler streams
differ while one seed still reproduces the whole study."""


def count_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED_STATES))


def _check_same_search(study: optuna.Study, prepared: Prepared) -> None:
    """A resumed study must stay the same search: same identity options, same metric."""
    spec, task = prepared.spec, prepared.task
    conflicts = spec.conflicts_with(study.user_attrs.get(keys.SPEC) or "{}")
    if conflicts:
        raise SpecError(
            f"study '{spec.name}' exists with other settings ({'; '.join(conflicts)}): "
            "use another --study-name"
        )
    recorded_metric = study.user_attrs.get(keys.METRIC)
    if recorded_metric is not None and recorded_metric != task.metric:
        raise SpecError(
            f"study '{spec.name}' optimizes {recorded_metric}; this run would optimize "
            f"{task.metric}: resume with the same options or use another --study-name"
        )


def study_tags(prepared: Prepared) -> dict[str, str]:
    """MLflow tags of every run of the study: its task, data set and metric."""
    return {
        keys.TASK: prepared.task.name,
        keys.DATASET: prepared.spec.dataset,
        keys.METRIC: prepared.task.metric,
    }


def open_study(
    prepared: Prepared,
    worker_index: int = 0,
    on_stale: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> optuna.Study:
    """Create the study, or load it and check it is the same search."""
    spec, task = prepared.spec, prepared.task
    storage = open_storage(
        spec.storage, spec.heartbeat_interval, spec.grace_period, on_stale or retry_callback()
    )
    try:
        existing = optuna.load_study(study_name=spec.name, storage=storage)
    except KeyError:
        existing = None
    if existing is not None:
        _check_same_search(existing, prepared)
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        sampler=make_sampler(spec.sampler, (spec.seed + WORKER_SEED_STRIDE * worker_index) % 2**32),
        pruner=make_pruner(spec.pruner, spec.max_epochs),
        direction=task.direction,
        load_if_exists=True,
    )
    if keys.SPEC not in study.user_attrs:
        study.set_user_attr(keys.SPEC, spec.to_json())
        study.set_user_attr(keys.TASK, task.name)
        study.set_user_attr(keys.DATASET, spec.dataset)
        study.set_user_attr(keys.METRIC, task.metric)
        # A search never starts worse than the task's defaults.
        study.enqueue_trial(prepared.space.default_trial_params(), skip_if_exists=True)
    else:
        study.set_user_attr(keys.SPEC, spec.to_json())  # the latest target and options
    return study


def attach_parent_run(prepared: Prepared, study: optuna.Study) -> StudyTracker:
    """The study's MLflow parent run, created before several workers start."""
    tracker = StudyTracker(prepared.spec.tracking_uri, prepared.spec.name)
    tracker.attach_parent(study, study_tags(prepared))
    return tracker


@dataclass
class StudyOutcome:
    """What one process's run of a study ended with."""

    study: optuna.Study
    """The study, as it stands."""
    finished: int
    """Its finished (complete + pruned) trials."""
    target: int
    """Its target of finished trials."""


class StopAtTarget:
    """Stop this worker once finished trials plus those other workers are running reach the
    target, so K workers never start trials beyond it. Dead workers' trials are failed first,
    so they do not count as running."""

    def __init__(self, target: int) -> None:
        self.counter = optuna.study.MaxTrialsCallback(
            target, states=(*FINISHED_STATES, TrialState.RUNNING)
        )

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        optuna.storages.fail_stale_trials(study)
        self.counter(study, trial)


def run_study(
    prepared: Prepared,
    worker_index: int = 0,
    progress: StudyProgress | None = None,
) -> StudyOutcome:
    """Optimize until the study's total target of finished trials is reached."""
    spec, task = prepared.spec, prepared.task
    dead_trials = DeadTrialHandler()
    study = open_study(prepared, worker_index, on_stale=dead_trials)
    tracker = attach_parent_run(prepared, study)
    dead_trials.tracker = tracker
    requeue_interrupted(study)
    tags = {keys.TASK: task.name, keys.DATASET: spec.dataset}

    def recorder_factory(trial: optuna.trial.BaseTrial):
        trial_tags = dict(tags)
        original = trial.user_attrs.get(keys.ORIGINAL_TRIAL)
        if original is not None:
            trial_tags[keys.RETRY_OF_TRIAL_TAG] = str(original)
        run = tracker.recorder(trial, trial_tags)
        if progress is not None:
            return progress.wrap(run, trial.number, task.metric)
        return run

    objective = Objective(
        task,
        prepared.data,
        prepared.space,
        LoopConfig(
            max_epochs=spec.max_epochs,
            patience=spec.patience,
            seed=spec.seed,
            device=str(prepared.device),
        ),
        recorder_factory,
        LocalCheckpoints(spec.study_checkpoint_dir),
    )
    status, reason = "KILLED", None
    try:
        if count_finished(study) < spec.n_trials:
            study.optimize(objective, timeout=spec.timeout, callbacks=[StopAtTarget(spec.n_trials)])
        finished = count_finished(study)
        status = "FINISHED" if finished >= spec.n_trials else "KILLED"
    except KeyboardInterrupt:
        reason = "interrupted"
        raise
    except BaseException as exc:
        status, reason = "FAILED", type(exc).__name__
        raise
    finally:
        tracker.close(status, reason)
    return StudyOutcome(study=study, finished=finished, target=spec.n_trials)
