"""The names tunelab writes into Optuna studies and MLflow runs, each declared once.

Optuna user attributes and tunelab's MLflow tags share the `tunelab.` prefix. The `optuna.*`
MLflow tags follow optuna-integration's names, so MLflow users find trials where they expect
them. Studies written before the prefix was shared used the bare names in `LEGACY_NAMES`;
`trial_attr` still reads them.
"""

from __future__ import annotations

from typing import Any

# -- Optuna trial user attributes -------------------------------------------------------------

FAIL_REASON = "tunelab.fail_reason"
"""Why a trial failed or was pruned without a pruner's decision (divergence, interruption)."""
BEST_STEP = "tunelab.best_step"
"""The step (rung) whose weights a complete trial kept, in the study's rung unit."""
STEPS_RUN = "tunelab.steps_run"
"""The last step a complete trial reached, in the study's rung unit."""
EARLY_STOPPED = "tunelab.early_stopped"
"""Whether early stopping ended a complete trial before its budget."""
STOPPED_AT_DEADLINE = "tunelab.stopped_at_deadline"
"""A trial the study's time budget ended early, complete with its best weights so far."""
MLFLOW_RUN_ID = "tunelab.mlflow_run_id"
"""The trial's MLflow run."""
TRIAL_NUMBER = "tunelab.trial_number"
"""The trial's own number. Optuna copies user attributes into the retry of a dead trial, so a
new trial that finds another number here is a retry of that trial."""
ORIGINAL_TRIAL = "tunelab.original_trial"
"""The first trial of a chain of retries and continuations: the configuration's own trial."""
RESUMED_FROM_TRIAL = "tunelab.resumed_from_trial"
"""The trial whose checkpoint a retry continued."""
RESUMED_AT_STEP = "tunelab.resumed_at_step"
"""The step at which a retry or continuation took its source's training up."""
ANCHOR_TRIAL = "tunelab.anchor_trial"
"""On a configuration the task asked to train right after the default, e.g. the smallest model
of a study with a size objective (`Task.anchor_configurations`)."""
DEFAULT_TRIAL = "tunelab.default_trial"
"""On the trial of the task's default configuration, enqueued first in every study."""
PAUSED_AT = "tunelab.paused_at"
"""The step at which successive halving paused the trial (PRUNED, its checkpoint kept)."""
RESUME_OF = "tunelab.resume_of"
"""On the continuation of a paused trial: that trial's number."""
RETRY_OF = "tunelab.retry_of"
"""On a queued retry of an interrupted or dead trial: that trial's number."""
OWNER = "tunelab.owner"
"""The process running the trial, `host:pid:start`: a trial whose owner is gone from this host
is reclaimed at once, without waiting for its heartbeat to go stale."""
STATIC_METRICS = "tunelab.static_metrics"
"""Metrics of the built, untrained model (parameters, MACs, latency), measured before training
in studies whose objectives or constraints use them: name -> value."""
RUNG_SCORES = "tunelab.rung_scores"
"""In a multi-objective study: the objectives scored at each rung, step (as text) -> metric ->
value (Optuna keeps intermediate values for single-objective studies only)."""
INFEASIBLE = "tunelab.infeasible"
"""The constraints a trial broke before training (it was ended at once, untrained)."""

# -- Optuna study user attributes -------------------------------------------------------------

SPEC = "tunelab.spec"
"""The study's StudySpec, as JSON."""
TASK = "tunelab.task"
"""The task's name."""
DATASET = "tunelab.dataset"
"""The data set's name."""
METRIC = "tunelab.metric"
"""The objective's metric name."""
METRICS_SPACE = "tunelab.metrics_space"
"""The task's reshaping of its search space for the study's objectives and constraints
(`Task.space_for_metrics`), kept as the study was created; a study created before it was
recorded has none and keeps the space it was searching."""
BUDGET = "tunelab.budget"
"""The study's trial budget and rungs (TrialBudget as JSON); absent in 0.1 studies (epochs)."""
PARENT_RUN_ID = "tunelab.mlflow_parent_run_id"
"""The study's MLflow parent run."""
STUDY_UID = "tunelab.study_uid"
"""A random id given to the study when it is created: what its checkpoints are keyed by, so
that a study of the same name in another storage, or created again, never loads them."""

# -- MLflow tags ------------------------------------------------------------------------------

ROLE_TAG = "tunelab.role"
"""`study` on a study's parent run."""
STUDY_NAME_TAG = "optuna.study_name"
TRIAL_NUMBER_TAG = "optuna.trial_number"
STATE_TAG = "optuna.state"
"""The trial's Optuna state: RUNNING, COMPLETE, PRUNED or FAIL."""
END_REASON_TAG = "tunelab.end_reason"
"""Why a run ended as it did (a pruner's decision, an interruption)."""
RECOVERED_TAG = "tunelab.recovered"
"""`true` on the run of a trial whose worker died, closed by another worker."""
RETRY_OF_TRIAL_TAG = "tunelab.retry_of_trial"
"""On a retry's run: the first trial of its chain."""
RESUMED_AT_STEP_TAG = RESUMED_AT_STEP
"""On a retry's run: the step of the checkpoint it continued from."""
STOPPED_TAG = "tunelab.stopped"
"""Why a complete trial ended before its budget: early-stopped or deadline."""
LAST_EXIT_TAG = "tunelab.last_exit"
"""On a parent run: how the last process working on the study ended, when not normally."""
EVALUATION_TAG = "tunelab.evaluation"
"""`true` on the run of `tunelab evaluate`."""
DASHBOARD_URL_TAG = "tunelab.dashboard_url"
"""On a trial's run: the trial in optuna-dashboard (when its URL is known)."""

LEGACY_NAMES = {
    FAIL_REASON: "fail_reason",
    BEST_STEP: "best_epoch",  # 0.1 studies count steps in epochs
    STEPS_RUN: "epochs_run",
    EARLY_STOPPED: "early_stopped",
    MLFLOW_RUN_ID: "mlflow_run_id",
    RESUMED_FROM_TRIAL: "resumed_from_trial",
}
"""Bare attribute names of studies written by tunelab 0.1."""


def trial_attr(trial: Any, key: str, default: Any = None) -> Any:
    """A trial's user attribute, also under its tunelab 0.1 name."""
    attrs = trial.user_attrs
    if key in attrs:
        return attrs[key]
    return attrs.get(LEGACY_NAMES.get(key, key), default)
