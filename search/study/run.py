"""Running a study: create or resume it, then optimize to its total trial target.

`prepare` (prepare.py) has checked every input; `run_study` creates or resumes the study and
optimizes until it holds `n_trials` finished (complete + pruned) trials, counted across every
process that works on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import optuna
import torch
from optuna.trial import TrialState

from tunelab.objectives import keys
from tunelab.objectives.checkpoints import CheckpointStore
from tunelab.objectives.runner import LoopConfig, Objective
from tunelab.search.adapters.checkpoint_stores import open_checkpoints
from tunelab.search.adapters.claims import forget_claims
from tunelab.search.adapters.storage import TargetReached, open_storage
from tunelab.search.adapters.tracking import StudyTracker
from tunelab.search.adapters.transient import Backoff, is_transient, retrying
from tunelab.search.halving import PausingHalvingPruner
from tunelab.search.multiobjective import (
    name_objectives,
    pareto_reports,
    study_directions,
    study_pruner,
)
from tunelab.search.spec import SpecError
from tunelab.search.strategies import make_pruner, make_sampler
from tunelab.search.study.budget import (
    BudgetPlan,
    check_same_budget,
    plan_budget,
    resolve_precision,
    stored_plan,
)
from tunelab.search.study.identity import new_study_uid, study_key
from tunelab.search.study.pareto import is_multi, log_front
from tunelab.search.study.prepare import Prepared
from tunelab.search.study.progress import StudyProgress
from tunelab.search.study.promotion import resume_promotable
from tunelab.search.study.recovery import (
    DeadTrialHandler,
    FailureStreak,
    process_owner,
    reclaim_orphans,
    requeue_interrupted,
)

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
FINISH_MARGIN_S = 5.0
"""Seconds kept free at the end of a time budget besides the trials' finish: the workers'
exit, the summary and the study's note."""
FINISH_CONTENTION = 2.0
"""A trial's finish, measured alone, takes up to this many times longer beside other workers."""
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
    workers: int = 1,
    threads: int | None = None,
) -> tuple[optuna.Study, BudgetPlan]:
    """Create the study (planning its trial budget for `workers` workers of `threads`
    threads), or load it, check it is the same search and search its space
    (`prepared.space`); returns it with its budget."""
    spec, task = prepared.spec, prepared.task
    storage = open_storage(
        spec.storage,
        spec.heartbeat_interval,
        spec.grace_period,
        on_stale or DeadTrialHandler(),
        trial_target=spec.trial_target,
    )
    train_size = len(prepared.data.train)
    try:
        existing = optuna.load_study(study_name=spec.name, storage=storage)
    except KeyError:
        existing = None
    plan = None
    if existing is not None:
        _check_same_search(existing, prepared)
        # the space the study was created with, though this tunelab would reshape it otherwise
        prepared.reshape_space(existing.user_attrs.get(keys.METRICS_SPACE, {}))
        plan = stored_plan(existing, spec, train_size)
        if plan is not None:
            check_same_budget(plan, spec)
    if plan is None:  # a new study: measured before anything is written
        plan = plan_budget(prepared, workers, threads, train_size)
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        sampler=make_sampler(spec.sampler, (spec.seed + WORKER_SEED_STRIDE * worker_index) % 2**32),
        pruner=study_pruner(
            prepared.objectives,
            lambda: make_pruner(spec.pruner, plan.budget, timed=plan.planned_for_s is not None),
        ),
        **study_directions(prepared.objectives, task),
        load_if_exists=True,
    )
    if keys.SPEC not in study.user_attrs:
        forget_claims(study)  # of a deleted study whose id this one may reuse
        study.set_user_attr(keys.STUDY_UID, new_study_uid())
        study.set_user_attr(keys.BUDGET, plan.to_json())
        study.set_user_attr(keys.SPEC, spec.to_json())
        study.set_user_attr(keys.TASK, task.name)
        study.set_user_attr(keys.DATASET, spec.dataset)
        study.set_user_attr(keys.METRIC, task.metric)
        study.set_user_attr(keys.METRICS_SPACE, prepared.metrics_space)
        name_objectives(study, prepared.objectives)
        # A search never starts worse than the task's defaults.
        default = prepared.space.default_trial_params()
        study.enqueue_trial(default, user_attrs={keys.DEFAULT_TRIAL: True}, skip_if_exists=True)
        objectives = prepared.objectives.names if prepared.objectives else (task.metric,)
        for changes in task.anchor_configurations(objectives):  # e.g. the front's other end
            anchor = prepared.space.default_trial_params(changes)
            if anchor != default:
                study.enqueue_trial(
                    anchor, user_attrs={keys.ANCHOR_TRIAL: True}, skip_if_exists=True
                )
    else:
        study.set_user_attr(keys.SPEC, spec.to_json())  # the latest target and options
    return study, plan


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


class BetweenTrials:
    """What a worker does after each trial: fail dead workers' trials (so they do not count as
    running), promote paused trials that now rank high enough, and stop starting trials once
    finished trials plus those other workers are running reach the target (so K workers never
    start trials beyond it) or too little of the time budget is left for a first rung."""

    def __init__(
        self,
        target: int | None,
        deadline: float | None,
        rung_seconds: float | None,
        checkpoints: CheckpointStore | None = None,
        on_dead: DeadTrialHandler | None = None,
    ) -> None:
        self.counter = (
            None
            if target is None
            else optuna.study.MaxTrialsCallback(
                target, states=(*FINISHED_STATES, TrialState.RUNNING)
            )
        )
        self.deadline = deadline
        self.rung_seconds = rung_seconds or 0.0
        self.checkpoints = checkpoints
        self.on_dead = on_dead or DeadTrialHandler()

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        optuna.storages.fail_stale_trials(study)
        reclaim_orphans(study, self.on_dead)
        if self.on_dead.tracker is not None:
            self.on_dead.tracker.close_stray_runs(study)
        if isinstance(study.pruner, PausingHalvingPruner):
            resume_promotable(study, study.pruner, self.checkpoints)
        if self.counter is not None:
            self.counter(study, trial)
        if self.deadline is not None and time.time() + self.rung_seconds >= self.deadline:
            study.stop()


def run_study(
    prepared: Prepared,
    worker_index: int = 0,
    progress: StudyProgress | None = None,
    threads: int | None = None,
) -> StudyOutcome:
    """Optimize until the study's total target of finished trials is reached, or its time
    budget is spent."""
    spec, task = prepared.spec, prepared.task
    deadline = spec.deadline or (time.time() + spec.timeout if spec.timeout else None)
    if threads:
        torch.set_num_threads(threads)
    dead_trials = DeadTrialHandler()
    # a worker that starts while the database restarts waits for it
    study, plan = retrying(
        lambda: open_study(prepared, worker_index, on_stale=dead_trials, threads=threads)
    )
    tracker = attach_parent_run(prepared, study)
    dead_trials.tracker = tracker
    retrying(lambda: requeue_interrupted(study))
    retrying(lambda: reclaim_orphans(study, dead_trials))  # a rerun resumes its dead trials
    tracker.close_stray_runs(study)
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

    budget = plan.budget
    checkpoints = open_checkpoints(spec.checkpoint_dir, study_key(study), spec.tracking_uri)
    pruner = study.pruner
    pausing = isinstance(pruner, PausingHalvingPruner)
    whole_val = budget.unit == "epochs" or not spec.rung_val_images
    # trials stop early enough to be scored and finalized before the deadline
    reserve = plan.finish_s * FINISH_CONTENTION + FINISH_MARGIN_S
    trials_end = None if deadline is None else deadline - reserve
    if pausing:  # trials paused by an earlier run that rank high enough by now
        pruner.deadline = trials_end
        pruner.full_trial_s = plan.full_trial_s()
        resume_promotable(study, pruner, checkpoints)
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
        recorder_factory,
        checkpoints,
        paused_at=pruner.take_pause if pausing else None,
        reports=pareto_reports(prepared.objectives, spec, budget.step(1)),
        end_after_tell=True,
    )
    target = spec.trial_target
    owner = process_owner()
    failures = FailureStreak()

    def owned_trial(trial: optuna.trial.Trial) -> float | tuple[float, ...]:
        trial.set_user_attr(keys.OWNER, owner)
        return objective(trial)

    def run_trials() -> None:
        study.optimize(
            owned_trial,
            timeout=None if trials_end is None else max(0.0, trials_end - time.time()),
            # one trial's exception is that trial's failure (FAIL, with its reason); Ctrl-C
            # and SIGTERM are not Exceptions and stop the worker
            catch=(Exception,),
            callbacks=[
                objective.after_tell,  # first: the trial's run closes once its end is stored
                failures,
                BetweenTrials(target, trials_end, plan.rung_seconds(), checkpoints, dead_trials),
                tracker.best_so_far(task.metric),
            ],
        )
        failures.check()

    status, reason = "KILLED", None
    try:
        work_to_target(study, run_trials, target, trials_end, dead_trials, spec.heartbeat_interval)
        finished = count_finished(study)
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


def work_to_target(
    study: optuna.Study,
    run_trials: Callable[[], None],
    target: int | None,
    trials_end: float | None,
    on_dead: DeadTrialHandler,
    poll_s: float,
) -> None:
    """Run trials until the study holds `target` finished trials or its time budget ends.

    Optuna's loop stops starting trials once finished plus running trials reach the target,
    and the storage refuses a new trial beyond it (so K workers do not overshoot it, even when
    they end trials in the same instant); when the rest are other processes' trials, this waits
    for them, reclaiming those whose owner is gone, and runs their retries: a rerun after a
    crash, or the last worker standing, finishes the study. A storage error that a database
    restart causes is retried with backoff for TRANSIENT_GIVE_UP_S; the trial it interrupted
    is failed and retried from its checkpoint (its owner, this process, no longer runs it).
    """
    backoff = Backoff()
    while not _past(trials_end):
        try:
            optuna.storages.fail_stale_trials(study)
            reclaim_orphans(study, on_dead)
            requeue_interrupted(study)  # e.g. one of several workers stopped: resume it here
            finished = count_finished(study)
            if target is not None and finished >= target:
                return
            pending = study.get_trials(
                deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)
            )
            waiting = any(t.state == TrialState.WAITING for t in pending)
            if target is None or waiting or finished + len(pending) < target:
                run_trials()
                if target is None:
                    return  # the time budget is spent, or the loop was stopped
            else:
                time.sleep(poll_s)  # other workers' trials stand between us and the target
            backoff.reset()
        except TargetReached:
            continue  # another worker started the last trial in the same instant: count again
        except Exception as error:
            if not is_transient(error):
                raise
            backoff.wait(error)


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.time() >= deadline
