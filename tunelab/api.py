"""tunelab from Python: the same studies as the command line, as plain Optuna and MLflow objects.

Each function does what the command of the same name does, through the same code:

    import tunelab

    study = tunelab.run("cnn", dataset="digits", n_trials=10, max_epochs=2)
    study.best_trial.params                      # an optuna.Study, as Optuna returns it
    tunelab.report(study.study_name)             # -> the report's files
    result = tunelab.evaluate(study.study_name)  # -> test metrics; result.run_id is MLflow's

Options are the fields of `StudySpec` (the command line's flags, with underscores), or a
whole `StudySpec`. The storage and tracking URIs default as on the command line
($TUNELAB_STORAGE, $MLFLOW_TRACKING_URI, then sqlite files in the current folder). Bad
options raise `tunelab.SpecError` with the one line the command would print.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the heavy modules load when a function runs, not at `import tunelab`
    import optuna

    from tunelab.search.analysis.evaluate import Evaluation
    from tunelab.search.analysis.report import ReportFiles
    from tunelab.search.spec import StudySpec

__all__ = [
    "best_trial",
    "best_trials",
    "create",
    "evaluate",
    "load",
    "report",
    "run",
    "spec",
    "tasks",
]


def spec(task: str, config: str | None = None, **options: Any) -> StudySpec:
    """A validated StudySpec: defaults < environment < `config` (a YAML file) < `options`,
    as `tunelab run TASK --config FILE --option value` builds it."""
    from tunelab.search.spec import build_spec

    return build_spec(task, config, options)


def _as_spec(task_or_spec: str | StudySpec, config: str | None, options: dict) -> StudySpec:
    from tunelab.search.cli.study import with_deadline
    from tunelab.search.spec import StudySpec

    started = time.time()  # a time budget counts from the call
    if isinstance(task_or_spec, StudySpec):
        if config or options:
            raise TypeError("pass either a StudySpec or a task with options, not both")
        return with_deadline(task_or_spec.validate(), started)
    return with_deadline(spec(task_or_spec, config, **options), started)


def create(task_or_spec: str | StudySpec, config: str | None = None, **options: Any):
    """Create a study (or check and resume one of the same name) without running trials,
    as `tunelab create` does. Returns the `optuna.Study`."""
    from tunelab.search.cli.study import create_study

    study, _ = create_study(_as_spec(task_or_spec, config, options))
    return study


def run(task_or_spec: str | StudySpec, config: str | None = None, **options: Any):
    """Create or resume a study and run it to its target, as `tunelab run` does (progress
    display, or plain lines with quiet=True; workers=N runs N processes). Returns the
    `optuna.Study`."""
    from tunelab.search.cli.study import run_spec

    return run_spec(_as_spec(task_or_spec, config, options))


def load(name: str, storage: str | None = None) -> optuna.Study:
    """An existing study (SpecError naming the studies there when it is not)."""
    from tunelab.search.spec import storage_url
    from tunelab.search.study.queries import load_study

    return load_study(name, storage_url(storage))


def _study(study: str | optuna.Study, storage: str | None) -> optuna.Study:
    return load(study, storage) if isinstance(study, str) else study


def best_trial(study: str | optuna.Study, storage: str | None = None):
    """The best complete trial (`optuna.trial.FrozenTrial`); its MLflow run id is in
    `user_attrs["tunelab.mlflow_run_id"]`. SpecError when no trial is complete yet."""
    from tunelab.search.spec import SpecError

    study = _study(study, storage)
    try:
        return study.best_trial
    except (ValueError, RuntimeError):
        raise SpecError(f"study '{study.study_name}' has no single best trial yet") from None


def best_trials(study: str | optuna.Study, storage: str | None = None) -> list:
    """The study's best trials: its Pareto front (one trial in a single-objective study)."""
    return _study(study, storage).best_trials


def report(
    study: str | optuna.Study,
    storage: str | None = None,
    out: str | None = None,
    tracking_uri: str | None = None,
    mlflow: bool = True,
) -> ReportFiles:
    """Write the study's HTML report (and log it to its MLflow parent run), as
    `tunelab report` does. Returns the report's files."""
    from tunelab.search.analysis.report import make_report
    from tunelab.search.spec import storage_url

    name, storage = _name_and_storage(study, storage)
    files, _ = make_report(name, storage_url(storage), out, tracking_uri, mlflow)
    return files


def evaluate(
    study: str | optuna.Study,
    seeds: int = 3,
    storage: str | None = None,
    tracking_uri: str | None = None,
    device: str | None = None,
) -> Evaluation:
    """Retrain the best configuration and score the test split once per seed, as
    `tunelab evaluate` does: one MLflow run (`.run_id`), the best seed's model registered
    (`.model_name`, `.model_version`), the test metrics over the seeds (`.summaries`)."""
    from tunelab.search.analysis.evaluate import EvaluationConfig, evaluate_study
    from tunelab.search.cli.common import say
    from tunelab.search.spec import storage_url

    name, storage = _name_and_storage(study, storage)
    config = EvaluationConfig(
        study=name,
        storage=storage_url(storage),
        seeds=seeds,
        tracking_uri=tracking_uri,
        device=device,
    )
    return evaluate_study(config, say=say)


def _name_and_storage(study: str | optuna.Study, storage: str | None) -> tuple[str, str | None]:
    """A study's name, and its storage URL when given a loaded study."""
    if isinstance(study, str):
        return study, storage
    url = getattr(getattr(study._storage, "_backend", study._storage), "url", None)
    return study.study_name, storage or url


def tasks() -> dict[str, str]:
    """The registered tasks (as `tunelab tasks` lists them): name -> package.module:Class."""
    from tunelab.objectives.registry import registered_tasks

    return {name: entry.target for name, entry in registered_tasks().items()}
