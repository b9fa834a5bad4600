"""tunelab from Python: the same studies as the command line, as plain Optuna and MLflow objects.

Each function does what the command of the same name does, through the same code:

    import tunelab

    study = tunelab.run("cnn", dataset="digits", n_trials=10, max_epochs=2)
    study.best_trial.params                      # an optuna.Study, as Optuna returns it
    tunelab.report(study.study_name)             # -> the report's files
    result = tunelab.evaluate(study.study_name)  # -> test metrics; result.run_id is MLflow's

The task is a name (as on the command line), a `tunelab.Task` subclass, or a function
declared with `@tunelab.objective`; the study stores the class's or function's
`module:qualname`, so that workers, `report` and `evaluate` find it again. Data of one's own
split comes as `data=(train, val)` or `(train, val, test)`, each a pair (inputs, labels) of
arrays or tensors or a `torch.utils.data.Dataset`, or as a `tunelab.DataBundle`; such data,
and a class defined in the script being run (`__main__`), live in this process only: the
study then runs in it (one worker), and its later `evaluate` from Python in it too.

Options are the fields of `StudySpec` (the command line's flags, with underscores), or a
whole `StudySpec`. The storage and tracking URIs default as on the command line
($TUNELAB_STORAGE, $MLFLOW_TRACKING_URI, then sqlite files in the current folder). Bad
options raise `tunelab.SpecError` with the one line the command would print. The functions
are as quiet as the commands: the libraries' notices that `tunelab` hides (Optuna's warnings
about the experimental features tunelab uses on purpose, MLflow's and Optuna's INFO lines)
stay hidden, verbose=True shows the INFO lines.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Iterator
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


@contextlib.contextmanager
def _as_quiet_as_the_cli(verbose: bool = False) -> Iterator[None]:
    """What `tunelab`'s entry point silences, for the length of one call: Optuna's
    ExperimentalWarnings (heartbeats, retries, grouped TPE: chosen on purpose) and its
    FutureWarnings; MLflow's INFO lines and progress bars (its environment, before it is
    imported) and usage telemetry, unless the user chose; the libraries' INFO lines unless
    `verbose`. The caller's warning filters and log levels are put back afterwards."""
    from tunelab.search.adapters.logs import LIBRARY_LOGGERS, library_logs, quiet_env
    from tunelab.search.adapters.tracking import telemetry_env

    for name, value in {**telemetry_env(), **quiet_env()}.items():
        os.environ.setdefault(name, value)
    import optuna

    verbosity = optuna.logging.get_verbosity()
    levels = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*experimental.*")
        warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
        library_logs(verbose)
        try:
            yield
        finally:
            optuna.logging.set_verbosity(verbosity)
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)


def spec(task: Any, config: str | None = None, **options: Any) -> StudySpec:
    """A validated StudySpec: defaults < environment < `config` (a YAML file) < `options`,
    as `tunelab run TASK --config FILE --option value` builds it. `task`: a name, a Task
    subclass or an `@tunelab.objective` function; `data=`: data of one's own split (see the
    module)."""
    from tunelab.search.spec import build_spec

    options = dict(options)
    reference = _reference(task)
    data = options.pop("data", None)
    if data is not None:
        if options.get("dataset") is not None:
            from tunelab.search.spec import SpecError

            raise SpecError("pass data=(train, val[, test]) or dataset=NAME, not both")
        options["dataset"] = _remembered(data)
    _one_process(reference, options)
    return build_spec(reference, config, options)


def _reference(task: Any) -> str:
    """The name a study stores for `task` (SpecError for a class or function that cannot be
    found again by name)."""
    from tunelab.objectives.registry import TaskError, reference_of
    from tunelab.search.spec import SpecError

    try:
        return reference_of(task)
    except TaskError as exc:
        raise SpecError(str(exc)) from None


def _remembered(data: Any) -> str:
    """The data set name of data handed to the API (kept in this process)."""
    from tunelab.objectives.data import DataBundle, DataError, remember
    from tunelab.search.spec import SpecError

    try:
        if isinstance(data, DataBundle):
            return remember(data)
        if isinstance(data, (tuple, list)) and len(data) in (2, 3):
            return remember(DataBundle.from_arrays(*data))
    except DataError as exc:
        raise SpecError(str(exc)) from None
    raise SpecError(
        "data must be (train, val) or (train, val, test), each a pair (inputs, labels) or a "
        f"torch.utils.data.Dataset, or a tunelab.DataBundle; not {type(data).__name__}"
    )


def _one_process(reference: str, options: dict[str, Any]) -> None:
    """A task only this process can import, or data only it holds: the study runs here, in
    one worker (the default then); several are refused in one line."""
    from tunelab.objectives.data import MEMORY_PREFIX
    from tunelab.objectives.registry import in_this_process_only
    from tunelab.search.spec import SpecError

    if in_this_process_only(reference):
        why = (
            f"task {reference.partition(':')[2]} is defined in the script being run "
            "(__main__), which worker processes cannot import: move it to a module"
        )
    elif str(options.get("dataset") or "").startswith(MEMORY_PREFIX):
        why = (
            "data handed to tunelab.run lives in this process, which worker processes cannot "
            "reach: save it (numpy.savez) and pass dataset='file:PATH.npz'"
        )
    else:
        return
    if options.get("workers") is None:
        options["workers"] = 1
    elif options["workers"] > 1:
        raise SpecError(f"workers={options['workers']}: {why}, or run with workers=1")


def _as_spec(task_or_spec: Any, config: str | None, options: dict) -> StudySpec:
    from tunelab.search.spec import StudySpec
    from tunelab.search.study.orchestration import with_deadline

    started = time.time()  # a time budget counts from the call
    if isinstance(task_or_spec, StudySpec):
        if config or options:
            raise TypeError("pass either a StudySpec or a task with options, not both")
        return with_deadline(task_or_spec.validate(), started)
    return with_deadline(spec(task_or_spec, config, **options), started)


def create(task_or_spec: Any, config: str | None = None, **options: Any):
    """Create a study (or check and resume one of the same name) without running trials,
    as `tunelab create` does. Returns the `optuna.Study`."""
    from tunelab.search.study.orchestration import create_study

    with _as_quiet_as_the_cli(bool(options.get("verbose"))):
        study, _ = create_study(_as_spec(task_or_spec, config, options))
    return study


def run(task_or_spec: Any, config: str | None = None, **options: Any):
    """Create or resume a study and run it to its target, as `tunelab run` does (progress
    display, or plain lines with quiet=True; workers=N runs N processes). `task_or_spec`:
    a task's name, a `tunelab.Task` subclass, an `@tunelab.objective` function, or a
    StudySpec; `data=(train, val[, test])` for data of one's own split. Returns the
    `optuna.Study`."""
    from tunelab.search.study.orchestration import run_spec

    with _as_quiet_as_the_cli(bool(options.get("verbose"))):
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
    with _as_quiet_as_the_cli():
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
    from tunelab.search.adapters.logs import say
    from tunelab.search.analysis.evaluate import EvaluationConfig, evaluate_study
    from tunelab.search.spec import storage_url

    name, storage = _name_and_storage(study, storage)
    config = EvaluationConfig(
        study=name,
        storage=storage_url(storage),
        seeds=seeds,
        tracking_uri=tracking_uri,
        device=device,
    )
    with _as_quiet_as_the_cli():
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
