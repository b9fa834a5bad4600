"""Running a study: storage, sampler, pruner, create or resume, the total trial target.

`prepare` checks everything a user can get wrong before anything is written; `run_study`
then creates or resumes the study and optimizes until the study holds `n_trials` finished
(complete + pruned) trials, counted across every process that works on it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import optuna
import torch
from optuna.trial import TrialState

from objectives.base import Task
from objectives.data import DataBundle, DataError, DataSpec, load_data
from objectives.runner import ORIGINAL_TRIAL_ATTR, LoopConfig, Objective
from objectives.space import SearchSpace, SearchSpaceError
from objectives.tasks import get_task
from search.config import SPEC_ATTR, SpecError, StudySpec
from search.progress import StudyProgress
from search.storage import check_database, open_storage
from search.tracking import RUN_ID_ATTR, StudyTracker, check_tracking_uri

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
TASK_ATTR = "tunelab.task"
DATASET_ATTR = "tunelab.dataset"
METRIC_ATTR = "tunelab.metric"
RETRY_OF_ATTR = "tunelab.retry_of"
"""User attribute of a queued retry: the number of the interrupted trial it resumes."""


@dataclass
class Prepared:
    """A validated study, ready to run: nothing has been written anywhere yet."""

    spec: StudySpec
    task: Task
    space: SearchSpace
    data: DataBundle
    device: torch.device


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SpecError("--device cuda: no CUDA GPU is available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise SpecError("--device mps: Apple MPS is not available")
    return torch.device(name)


def prepare(spec: StudySpec) -> Prepared:
    """Validate every input that can be wrong; raises SpecError with one line."""
    spec.validate()
    try:
        task = get_task(spec.task, spec.task_options)
    except (ValueError, TypeError) as exc:
        raise SpecError(str(exc)) from None
    try:
        space = task.search_space().narrowed(spec.params)
    except SearchSpaceError as exc:
        raise SpecError(f"config: {exc}") from None
    check_database(spec.storage, what="storage")
    check_tracking_uri(spec.tracking_uri)
    device = resolve_device(spec.device)
    try:
        data = load_data(
            DataSpec(name=spec.dataset, data_dir=spec.data_dir, limit_train=spec.limit_train),
            device,
        )
    except DataError as exc:
        raise SpecError(str(exc)) from None
    return Prepared(spec=spec, task=task, space=space, data=data, device=device)


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    samplers: dict[str, Callable[[], optuna.samplers.BaseSampler]] = {
        # multivariate + group: TPE models parameters jointly, conditional ones per group.
        "tpe": lambda: optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, n_startup_trials=5
        ),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed),
        "qmc": lambda: optuna.samplers.QMCSampler(seed=seed),
    }
    return samplers[name]()


def make_pruner(name: str, max_epochs: int) -> optuna.pruners.BasePruner:
    def median() -> optuna.pruners.MedianPruner:
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)

    pruners: dict[str, Callable[[], optuna.pruners.BasePruner]] = {
        "hyperband": lambda: optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=max_epochs, reduction_factor=3
        ),
        "median": median,
        "asha": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1),
        "patient": lambda: optuna.pruners.PatientPruner(median(), patience=2),
        "none": optuna.pruners.NopPruner,
    }
    return pruners[name]()


def count_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED_STATES))


def _check_same_search(study: optuna.Study, spec: StudySpec, task: Task) -> None:
    """A resumed study must stay the same search: same identity options, same metric."""
    conflicts = spec.conflicts_with(study.user_attrs.get(SPEC_ATTR, "{}"))
    if conflicts:
        raise SpecError(
            f"study '{spec.name}' exists with other settings ({'; '.join(conflicts)}): "
            "use another --study-name"
        )
    recorded_metric = study.user_attrs.get(METRIC_ATTR)
    if recorded_metric is not None and recorded_metric != task.metric:
        raise SpecError(
            f"study '{spec.name}' optimizes {recorded_metric}; this run would optimize "
            f"{task.metric}: resume with the same options or use another --study-name"
        )


def open_study(
    prepared: Prepared,
    worker_index: int = 0,
    on_stale: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> optuna.Study:
    """Create the study, or load it and check it is the same search."""
    spec, task = prepared.spec, prepared.task
    storage = open_storage(spec.storage, spec.heartbeat_interval, spec.grace_period, on_stale)
    try:
        existing = optuna.load_study(study_name=spec.name, storage=storage)
    except KeyError:
        existing = None
    if existing is not None:
        _check_same_search(existing, spec, task)
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        sampler=make_sampler(spec.sampler, (spec.seed + 7919 * worker_index) % 2**32),
        pruner=make_pruner(spec.pruner, spec.epochs),
        direction=task.direction,
        load_if_exists=True,
    )
    if SPEC_ATTR not in study.user_attrs:
        study.set_user_attr(SPEC_ATTR, spec.to_json())
        study.set_user_attr(TASK_ATTR, task.name)
        study.set_user_attr(DATASET_ATTR, spec.dataset)
        study.set_user_attr(METRIC_ATTR, task.metric)
        # A search never starts worse than the task's defaults.
        study.enqueue_trial(prepared.space.default_trial_params(), skip_if_exists=True)
    else:
        study.set_user_attr(SPEC_ATTR, spec.to_json())  # the latest target and options
    return study


@dataclass
class StudyOutcome:
    """What one process's run of a study ended with."""

    study: optuna.Study
    finished: int
    target: int


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


class DeadTrialHandler:
    """Heartbeat-stale trial callback: close the dead trial's MLflow run as FAILED (tagged
    recovered), then let Optuna queue its retry, which resumes from the trial's checkpoint."""

    def __init__(self) -> None:
        self.tracker: StudyTracker | None = None
        self.retry = optuna.storages.RetryHeartbeatStaleTrialCallback(
            max_retry=3, inherit_intermediate_values=True
        )

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        run_id = trial.user_attrs.get(RUN_ID_ATTR)
        if self.tracker is not None and run_id:
            self.tracker.fail_dead_run(run_id)
        self.retry(study, trial)


def requeue_interrupted(study: optuna.Study) -> list[int]:
    """Queue a retry of every trial ended by Ctrl-C / SIGTERM that has none yet; the retry
    resumes from the interrupted trial's last epoch checkpoint."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get(RETRY_OF_ATTR) for t in trials}
    queued = []
    for trial in trials:
        if (
            trial.state == TrialState.FAIL
            and trial.user_attrs.get("fail_reason") == "interrupted"
            and trial.number not in retried
        ):
            study.add_trial(
                optuna.trial.create_trial(
                    state=TrialState.WAITING,
                    params=trial.params,
                    distributions=trial.distributions,
                    user_attrs={**trial.user_attrs, RETRY_OF_ATTR: trial.number},
                    intermediate_values=trial.intermediate_values,
                )
            )
            queued.append(trial.number)
    return queued


def run_study(
    prepared: Prepared,
    worker_index: int = 0,
    progress: StudyProgress | None = None,
) -> StudyOutcome:
    """Optimize until the study's total target of finished trials is reached."""
    spec, task = prepared.spec, prepared.task
    dead_trials = DeadTrialHandler()
    study = open_study(prepared, worker_index, on_stale=dead_trials)
    tracker = StudyTracker(spec.tracking_uri, spec.name)
    dead_trials.tracker = tracker
    tags = {"tunelab.task": task.name, "tunelab.dataset": spec.dataset}
    tracker.attach_parent(study, {**tags, "tunelab.metric": task.metric})
    requeue_interrupted(study)

    def recorder_factory(trial: optuna.trial.BaseTrial):
        trial_tags = dict(tags)
        original = trial.user_attrs.get(ORIGINAL_TRIAL_ATTR)
        if original is not None:
            trial_tags["tunelab.retry_of_trial"] = str(original)
        run = tracker.recorder(trial, trial_tags)
        if progress is not None:
            return progress.wrap(run, trial.number, task.metric)
        return run

    objective = Objective(
        task,
        prepared.data,
        prepared.space,
        LoopConfig(
            max_epochs=spec.epochs,
            patience=spec.patience,
            seed=spec.seed,
            device=str(prepared.device),
            checkpoint_dir=spec.study_checkpoint_dir,
        ),
        recorder_factory,
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


def attach_parent_run(prepared: Prepared, study: optuna.Study) -> StudyTracker:
    """The study's MLflow parent run, created before several workers start."""
    tracker = StudyTracker(prepared.spec.tracking_uri, prepared.spec.name)
    tracker.attach_parent(
        study,
        {
            "tunelab.task": prepared.task.name,
            "tunelab.dataset": prepared.spec.dataset,
            "tunelab.metric": prepared.task.metric,
        },
    )
    return tracker


def with_retries(check: Callable[[], None], attempts: int | None = None, delay: float = 3.0):
    """Run a reachability check, retrying a bounded number of times (a database or tracking
    server still starting, e.g. in docker compose) before its one-line error stands."""
    attempts = attempts or int(os.environ.get("TUNELAB_CONNECT_ATTEMPTS", "5"))
    for attempt in range(1, attempts + 1):
        try:
            return check()
        except SpecError as error:
            if attempt == attempts or "cannot reach" not in str(error):
                raise
            time.sleep(delay)


def join_spec(
    name: str, storage_url: str, tracking_uri: str | None, device: str | None, quiet: bool
) -> StudySpec:
    """The spec of an existing study, as a worker joining it from anywhere runs it."""
    with_retries(lambda: check_database(storage_url))
    study = load_study(name, storage_url)
    spec = stored_spec(
        study,
        storage=storage_url,
        tracking_uri=tracking_uri,
        device=device,
        quiet=quiet or None,
        workers=1,
    )
    with_retries(lambda: check_tracking_uri(spec.tracking_uri))
    return spec.validate()


def stored_spec(study: optuna.Study, **overrides) -> StudySpec:
    stored = study.user_attrs.get(SPEC_ATTR)
    if stored is None:
        raise SpecError(f"study '{study.study_name}' was not created by tunelab")
    return StudySpec.from_stored(stored, study_name=study.study_name, **overrides)


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
        spec = json.loads(study.user_attrs.get(SPEC_ATTR, "{}"))
        rows.append(
            {
                "name": summary.study_name,
                "task": spec.get("task", "?"),
                "dataset": spec.get("dataset", "?"),
                "metric": study.user_attrs.get(METRIC_ATTR, "value"),
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
    try:
        best = study.best_trial
    except ValueError:
        raise SpecError(f"study '{study.study_name}' has no complete trial yet") from None
    return {
        "study": study.study_name,
        "metric": study.user_attrs.get(METRIC_ATTR, "value"),
        "direction": study.direction.name.lower(),
        "trial": best.number,
        "value": best.value,
        "params": best.params,
        "best_epoch": best.user_attrs.get("best_epoch"),
        "mlflow_run_id": best.user_attrs.get("mlflow_run_id"),
    }
