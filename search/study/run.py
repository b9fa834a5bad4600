"""Running a study in this process: create or resume it, then work on it to its end.

`prepare` (prepare.py) has checked every input; `open_study` creates or resumes the study
(planning its trial budget once); `run_study` builds this process's scheduler and worker
(`tunelab.search.scheduler`) and works until the study holds `n_trials` finished (complete +
pruned) trials, counted across every process that works on it, or its time budget is spent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import optuna
import torch

from tunelab.objectives import keys
from tunelab.objectives.runner import Objective
from tunelab.objectives.space import signature_of, space_changes
from tunelab.objectives.training import LoopConfig
from tunelab.search.adapters.checkpoint_stores import open_checkpoints
from tunelab.search.adapters.storage import open_storage, rdb_of
from tunelab.search.adapters.tracking import StudyTracker
from tunelab.search.adapters.transient import retrying
from tunelab.search.launch.environment import job_tags
from tunelab.search.multiobjective import StudyReports, name_objectives, study_directions
from tunelab.search.scheduler import lineage
from tunelab.search.scheduler.hosts import new_owner
from tunelab.search.scheduler.policies import make_policy
from tunelab.search.scheduler.recovery import Recovery
from tunelab.search.scheduler.scheduler import TrialScheduler, count_finished
from tunelab.search.scheduler.worker import Worker
from tunelab.search.spec import SpecError
from tunelab.search.strategies import make_pruner, make_sampler
from tunelab.search.study.budget import (
    BudgetPlan,
    check_same_budget,
    plan_budget,
    resolve_precision,
    stored_plan,
)
from tunelab.search.study.identity import study_key, study_uid
from tunelab.search.study.pareto import is_multi, log_front
from tunelab.search.study.prepare import Prepared
from tunelab.search.study.progress import StudyProgress

FINISH_MARGIN_S = 5.0
"""Seconds kept free at the end of a time budget besides the trials' finish: the workers'
exit, the summary and the study's note."""
FINISH_CONTENTION = 2.0
"""A trial's finish, measured alone, takes up to this many times longer beside other workers."""
WORKER_SEED_STRIDE = 7919
"""Worker i samples with seed + WORKER_SEED_STRIDE * i: a prime, so workers' sampler streams
differ while one seed still reproduces the whole study."""


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


def _check_same_space(study: optuna.Study, prepared: Prepared) -> None:
    """A resumed study must search the space it was created with: a task whose search space
    was edited since would fail every trial that samples a changed categorical (Optuna
    refuses another set of choices) and mix incomparable trials otherwise. Studies from
    before the space was recorded are compared with what their trials sampled."""
    stored = study.user_attrs.get(keys.SEARCH_SPACE)
    if stored is None:
        sampled: dict = {}
        for trial in study.get_trials(deepcopy=False):
            sampled.update(trial.distributions)
        stored, complete = signature_of(sampled), False
    else:
        complete = True
    changes = space_changes(stored, prepared.space.signature(), complete)
    if changes:
        raise SpecError(
            f"study '{prepared.spec.name}' was created with another search space than task "
            f"'{prepared.task.name}' has now ({'; '.join(changes)}): start a new study "
            "with --study-name (study_name= in Python), or undo the change"
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
    workers: int = 1,
    threads: int | None = None,
) -> tuple[optuna.Study, BudgetPlan]:
    """Create the study (planning its trial budget for `workers` workers of `threads`
    threads), or load it, check it is the same search and search its space
    (`prepared.space`); returns it with its budget. A process that starts while the database
    restarts or is cut off waits for it (`retrying`), whichever command it runs."""
    return retrying(lambda: _open_study(prepared, worker_index, workers, threads))


def _open_study(
    prepared: Prepared, worker_index: int, workers: int, threads: int | None
) -> tuple[optuna.Study, BudgetPlan]:
    spec, task = prepared.spec, prepared.task
    storage = open_storage(
        spec.storage, spec.heartbeat_interval, spec.grace_period, trial_target=spec.trial_target
    )
    train_size = len(prepared.data.train)
    try:
        existing = optuna.load_study(study_name=spec.name, storage=storage)
    except KeyError:
        existing = None
    if existing is not None and _unfinished_creation(existing):
        existing = None  # a creation cut short (its process died): finished below
    plan = None
    if existing is not None:
        _check_same_search(existing, prepared)
        # the space the study was created with, though this tunelab would reshape it otherwise
        prepared.reshape_space(existing.user_attrs.get(keys.METRICS_SPACE, {}))
        _check_same_space(existing, prepared)
        plan = stored_plan(existing, spec, train_size)
        if plan is not None:
            check_same_budget(plan, spec)
    if plan is None:  # a new study: measured before anything is written
        plan = plan_budget(prepared, workers, threads, train_size)
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        sampler=make_sampler(spec.sampler, (spec.seed + WORKER_SEED_STRIDE * worker_index) % 2**32),
        # the Optuna pruner, when the scheduler's policy is Optuna's (see policies.py)
        pruner=make_pruner(spec.pruner, plan.budget, timed=plan.planned_for_s is not None),
        **study_directions(prepared.objectives, task),
        load_if_exists=True,
    )
    if keys.SPEC not in study.user_attrs:
        # the id first, the spec last: a study without its spec is a creation cut short, which
        # the next process finishes (every step below is idempotent)
        study_uid(study)
        study.set_user_attr(keys.BUDGET, plan.to_json())
        study.set_user_attr(keys.TASK, task.name)
        study.set_user_attr(keys.DATASET, spec.dataset)
        study.set_user_attr(keys.METRIC, task.metric)
        study.set_user_attr(keys.METRICS_SPACE, prepared.metrics_space)
        study.set_user_attr(keys.SEARCH_SPACE, prepared.space.signature())
        name_objectives(study, prepared.objectives)
        # A search never starts worse than the task's defaults.
        default = prepared.space.default_trial_params()
        study.enqueue_trial(default, user_attrs=lineage.default_marks(), skip_if_exists=True)
        objectives = prepared.objectives.names if prepared.objectives else (task.metric,)
        for changes in task.anchor_configurations(objectives):  # e.g. the front's other end
            anchor = prepared.space.default_trial_params(changes)
            if anchor != default:
                study.enqueue_trial(anchor, user_attrs=lineage.anchor_marks(), skip_if_exists=True)
        study.set_user_attr(keys.SPEC, spec.to_json())
    else:
        study.set_user_attr(keys.SPEC, spec.to_json())  # the latest target and options
    return study, plan


def _unfinished_creation(study: optuna.Study) -> bool:
    """A study tunelab began to create and did not finish (its spec is written last), or an
    empty study of that name: either is completed as a new one."""
    attrs = study.user_attrs
    return keys.SPEC not in attrs and (keys.STUDY_UID in attrs or not study.get_trials())


def attach_parent_run(prepared: Prepared, study: optuna.Study) -> StudyTracker:
    """The study's MLflow parent run, created before several workers start."""
    tracker = StudyTracker.for_spec(prepared.spec)
    tracker.attach_parent(study, study_tags(prepared))
    return tracker


@dataclass
class StudyOutcome:
    """What one process's run of a study ended with."""

    study: optuna.Study
    """The study, as it stands."""
    finished: int
    """Its finished (complete + pruned) trials."""
    target: int | None
    """Its target of finished trials (None: as many as its time budget allows)."""


def run_study(
    prepared: Prepared,
    worker_index: int = 0,
    progress: StudyProgress | None = None,
    threads: int | None = None,
) -> StudyOutcome:
    """Work on the study until it holds its total target of finished trials, or its time
    budget is spent: this process's scheduler and worker over the shared study."""
    spec, task = prepared.spec, prepared.task
    deadline = spec.deadline or (time.time() + spec.timeout if spec.timeout else None)
    if threads:
        torch.set_num_threads(threads)
    study, plan = open_study(prepared, worker_index, threads=threads)
    tracker = retrying(lambda: attach_parent_run(prepared, study))
    # and the batch job this worker runs in (Slurm's job and array task), where it runs in one
    tags = {keys.TASK: task.name, keys.DATASET: spec.dataset, **job_tags()}

    def recorder_for(trial: optuna.Trial, lineage_tags):
        run = tracker.recorder(trial, {**tags, **lineage_tags})
        if progress is not None:
            return progress.wrap(run, trial.number, task.metric)
        return run

    budget = plan.budget
    checkpoints = open_checkpoints(spec.checkpoint_dir, study_key(study), spec.tracking_uri)
    whole_val = budget.unit == "epochs" or not spec.rung_val_images
    # trials stop early enough to be scored and finalized before the deadline
    reserve = plan.finish_s * FINISH_CONTENTION + FINISH_MARGIN_S
    trials_end = None if deadline is None else deadline - reserve
    policy = make_policy(
        spec.pruner,
        budget,
        prepared.objectives,
        timed=plan.planned_for_s is not None,
        deadline=trials_end,
        full_trial_s=plan.full_trial_s(),
    )

    def on_dead(trial: optuna.trial.FrozenTrial) -> None:
        run_id = keys.trial_attr(trial, keys.MLFLOW_RUN_ID)
        if run_id:
            tracker.fail_dead_run(run_id, keys.trial_attr(trial, keys.FAIL_REASON) or "worker died")

    owner = new_owner()  # this worker, the owner of the trials it takes
    scheduler = TrialScheduler(
        study,
        policy,
        StudyReports(task.metric, prepared.objectives),
        Recovery(study, rdb_of(study), spec.grace_period, on_dead, me=owner),
        target=spec.trial_target,
        trials_end=trials_end,
        rung_seconds=plan.rung_seconds() or 0.0,
        checkpoints=checkpoints,
    )
    objective = Objective(
        task,
        prepared.data,
        prepared.space,
        LoopConfig(
            budget=budget,
            patience=spec.patience_for(budget.epochs),
            seed=spec.seed,
            device=str(prepared.device),
            precision=resolve_precision(spec.precision, prepared.device),
            rung_val_images=None if whole_val else spec.rung_val_images,
            deadline=trials_end,
        ),
    )
    best_so_far = tracker.best_so_far(task.metric)
    worker = Worker(
        study,
        scheduler,
        objective,
        recorder_for,
        checkpoints,
        heartbeat_interval=spec.heartbeat_interval,
        after_trial=lambda trial: best_so_far(study, trial),
        owner=owner,
    )
    target = spec.trial_target
    status, reason = "KILLED", None
    try:
        tracker.close_stray_runs(study)  # runs of trials whose process died as they ended
        worker.work()
        finished = retrying(lambda: count_finished(study))
        status = "FINISHED" if target is None or finished >= target else "KILLED"
        if is_multi(study) and tracker.parent_run_id:  # the front, a table on the parent run
            tracker.write_parent(lambda client, run_id: log_front(study, client, run_id))
        if target is not None and finished >= target:
            # the study is done: no retry or paused trial will need a checkpoint any more
            checkpoints.clear()
    except KeyboardInterrupt:
        reason = "interrupted"
        raise
    except BaseException as exc:
        status, reason = "FAILED", type(exc).__name__
        raise
    finally:
        tracker.close(status, reason)
    return StudyOutcome(study=study, finished=finished, target=target)
