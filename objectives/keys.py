"""The names tunelab writes into Optuna studies and MLflow runs, each declared once.

A trial's lineage (retries, continuations, pauses, owners, the reference trials) is not here:
`tunelab.search.scheduler.lineage` declares those names and is the only code that reads or
writes them.

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
SEARCH_SPACE = "tunelab.search_space"
"""The space the study searches, as it was created (`SearchSpace.signature`): a rerun whose
task searches another one (an edited `search_space`) is refused, not left to fail its trials."""
BUDGET = "tunelab.budget"
"""The study's trial budget and rungs (TrialBudget as JSON); absent in 0.1 studies (epochs)."""
PARENT_RUN_ID = "tunelab.mlflow_parent_run_id"
"""The study's MLflow parent run."""
SLURM_JOBS = "tunelab.slurm_jobs"
"""The Slurm job arrays `tunelab launch slurm` submitted for the study, oldest first: a list of
{job_id, workers, submitted (ISO time), cluster, script}; `--status` and `--cancel` find them
there."""
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
}
"""Bare attribute names of studies written by tunelab 0.1."""


def trial_attr(trial: Any, key: str, default: Any = None) -> Any:
    """A trial's user attribute, also under its tunelab 0.1 name."""
    attrs = trial.user_attrs
    if key in attrs:
        return attrs[key]
    return attrs.get(LEGACY_NAMES.get(key, key), default)
