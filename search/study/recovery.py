"""Trials that did not end on their own: dead workers' trials and interrupted ones, retried.

A trial whose process died is failed by another worker once its heartbeat is stale; its
MLflow run is closed and Optuna queues a retry. A trial ended by Ctrl-C or SIGTERM is FAIL with
reason `interrupted`; the next run of the study queues its retry. Either retry resumes from the
trial's last epoch checkpoint.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from tunelab.objectives import keys
from tunelab.search.adapters.tracking import StudyTracker

MAX_RETRY = 3
"""Retries of one dead trial before it stays failed."""


def retry_callback() -> optuna.storages.RetryHeartbeatStaleTrialCallback:
    """Optuna's retry of a dead trial, carrying its curve over to the retry."""
    return optuna.storages.RetryHeartbeatStaleTrialCallback(
        max_retry=MAX_RETRY, inherit_intermediate_values=True
    )


class DeadTrialHandler:
    """Heartbeat-stale trial callback: close the dead trial's MLflow run as FAILED (tagged
    recovered), then let Optuna queue its retry, which resumes from the trial's checkpoint."""

    def __init__(self) -> None:
        self.tracker: StudyTracker | None = None
        self.retry = retry_callback()

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        run_id = keys.trial_attr(trial, keys.MLFLOW_RUN_ID)
        if self.tracker is not None and run_id:
            self.tracker.fail_dead_run(run_id)
        self.retry(study, trial)


def requeue_interrupted(study: optuna.Study) -> list[int]:
    """Queue a retry of every trial ended by Ctrl-C / SIGTERM that has none yet; the retry
    resumes from the interrupted trial's last epoch checkpoint."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get(keys.RETRY_OF) for t in trials}
    queued = []
    for trial in trials:
        if (
            trial.state == TrialState.FAIL
            and keys.trial_attr(trial, keys.FAIL_REASON) == "interrupted"
            and trial.number not in retried
        ):
            study.add_trial(
                optuna.trial.create_trial(
                    state=TrialState.WAITING,
                    params=trial.params,
                    distributions=trial.distributions,
                    user_attrs={**trial.user_attrs, keys.RETRY_OF: trial.number},
                    intermediate_values=trial.intermediate_values,
                )
            )
            queued.append(trial.number)
    return queued
