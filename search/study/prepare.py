"""Everything a user can get wrong, checked before anything is written anywhere.

Besides the options, storage, tracking and data: the task's search space against its
hyperparameter dataclass (a Param naming no field, a field without a default), and, before the
first trial of a new study, a dry run of the task's default configuration (built, one
training step and one evaluation on one batch; for a function-style objective, its function
to its first report). A mistake in the user's code is one line naming their file and line.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch

from tunelab.objectives.base import Task
from tunelab.objectives.data import OWN_DATA, DataBundle, DataError, DataSpec, load_data
from tunelab.objectives.functional import FunctionTask, default_value, own_data
from tunelab.objectives.registry import get_task, where
from tunelab.objectives.space import SearchSpace, SearchSpaceError, check_space
from tunelab.search.adapters.checkpoint_stores import check_checkpoint_location
from tunelab.search.adapters.storage import check_database
from tunelab.search.adapters.tracking import check_tracking_uri
from tunelab.search.multiobjective import StudyObjectives, resolve_objectives
from tunelab.search.spec import SpecError, StudySpec


@dataclass
class Prepared:
    """A validated study, ready to run: nothing has been written anywhere yet."""

    spec: StudySpec
    """The study's options."""
    task: Task
    """The task, with its options."""
    space: SearchSpace
    """The task's search space, reshaped for the study's metrics, then narrowed as the spec
    asks."""
    data: DataBundle
    """The data set, split and on the training device."""
    device: torch.device
    """The training device."""
    objectives: StudyObjectives | None = None
    """What the study optimizes and its constraints (the task's metric alone by default)."""
    metrics_space: Mapping[str, Any] = field(default_factory=dict)
    """The task's reshaping of its space for those metrics (`Task.space_for_metrics`), as
    JSON-ready narrowing: stored on a new study, which keeps it when resumed."""

    def reshape_space(self, metrics_space: Mapping[str, Any]) -> None:
        """Search the space reshaped by `metrics_space` instead (a resumed study's own)."""
        self.space = study_space(self.task, metrics_space, self.spec.params)
        self.metrics_space = metrics_space


def study_space(
    task: Task, metrics_space: Mapping[str, Any], params: Mapping[str, Any]
) -> SearchSpace:
    """The task's space, reshaped for the study's metrics, then the user's narrowing."""
    try:
        return task.search_space().narrowed(metrics_space).narrowed(params)
    except SearchSpaceError as exc:
        raise SpecError(f"config: {exc}") from None
    except Exception as exc:  # the task's own code: its search space is wrong
        defined = getattr(exc, "defined", None) or _space_owner(task)
        raise SpecError(f"task '{task.name}': its search space: {where(exc, defined)}") from None


def task_space(task: Task) -> SearchSpace:
    """The task's own space, checked against its hyperparameter dataclass (SpecError naming
    the user's file and line)."""
    try:
        space = task.search_space()
        if dataclasses.is_dataclass(task.hparams_type):  # a function's space is its own
            check_space(space, task.hparams_type)
    except Exception as exc:  # the task's own code (or its definition) is wrong
        defined = getattr(exc, "defined", None) or _space_owner(task)
        raise SpecError(f"task '{task.name}': its search space: {where(exc, defined)}") from None
    return space


def _space_owner(task: Task) -> Any:
    """Where a task's search space is declared: its function, or its class."""
    return task.objective.function if isinstance(task, FunctionTask) else type(task)


def own_definition(task: Task) -> Any:
    """What of the user's to point at when their code is not on the traceback: the
    function of a function-style objective, the `model` of a classifier, else the class."""
    if isinstance(task, FunctionTask):
        return task.objective.function
    model = getattr(type(task), "model", None)
    if model is not None and not getattr(model, "__isabstractmethod__", False):
        return model
    return type(task)


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
    objectives = resolve_objectives(spec, task)
    task_space(task)
    # JSON round trip: what a resumed study reads back compares equal to a new study's
    metrics_space = json.loads(json.dumps(task.space_for_metrics(objectives.used_metrics)))
    space = study_space(task, metrics_space, spec.params)
    check_database(spec.storage, what="storage")
    check_tracking_uri(spec.tracking_uri)
    check_checkpoint_location(spec.checkpoint_dir, spec.tracking_uri)
    device = resolve_device(spec.device)
    prepared = Prepared(
        spec=spec,
        task=task,
        space=space,
        data=_data(spec, task, device),
        device=device,
        objectives=objectives,
        metrics_space=metrics_space,
    )
    if not study_exists(spec.storage, spec.name):
        dry_run(prepared)  # before the first trial of a new study, nothing written yet
    return prepared


def _data(spec: StudySpec, task: Task, device: torch.device) -> DataBundle:
    """The study's data set; a function-style objective's is its own."""
    if isinstance(task, FunctionTask):
        if spec.dataset != OWN_DATA or spec.limit_train is not None:
            option = "--dataset" if spec.dataset != OWN_DATA else "--limit-train"
            raise SpecError(
                f"task '{task.name}' is a function-style objective, which loads its own "
                f"data: leave {option} out"
            )
        return own_data()
    if spec.dataset == OWN_DATA:
        raise SpecError(
            f"data set '{OWN_DATA}' is a function-style objective's own data; task "
            f"'{task.name}' needs one (--dataset)"
        )
    try:
        return load_data(
            DataSpec(name=spec.dataset, data_dir=spec.data_dir, limit_train=spec.limit_train),
            device,
        )
    except DataError as exc:
        raise SpecError(str(exc)) from None


def study_exists(storage_url: str, name: str) -> bool:
    """Whether the storage holds a tunelab study of this name whose creation finished (its
    spec is written last). Read-only: a run refused after this wrote nothing."""
    from tunelab.objectives import keys
    from tunelab.search.adapters.storage import parse_url, sqlite_path

    path = sqlite_path(parse_url(storage_url))
    if path is not None and (not path.is_file() or path.stat().st_size == 0):
        return False
    try:
        storage = optuna.storages.RDBStorage(
            storage_url, skip_compatibility_check=True, skip_table_creation=True
        )
    except Exception:  # no Optuna tables (a new database): no study
        return False
    try:
        study_id = storage.get_study_id_from_name(name)
        return keys.SPEC in storage.get_study_user_attrs(study_id)
    except Exception:  # KeyError: no such study; a database without Optuna's tables
        return False
    finally:
        storage.engine.dispose()


def dry_run(prepared: Prepared) -> None:
    """Build the default configuration, train one step on one batch and evaluate one batch
    (a function-style objective: its function to its first report). A failure (a model that
    raises in forward, a wrong input size, a metric `evaluate` does not return) is one line
    naming the user's file and line; the study is not created."""
    from tunelab.objectives.budget import epoch_budget
    from tunelab.objectives.training import LoopConfig, TrialTraining

    task, space, data = prepared.task, prepared.space, prepared.data
    what = f"task '{task.name}': dry run of its default configuration"
    try:
        hp = task.suggest(optuna.trial.FixedTrial(_default_params(space)), space)
        batch = max(1, min(task.batch_size(hp), len(data.train)))
        first = torch.arange(batch)
        val = data.val.take(first[: len(data.val)])
        small = dataclasses.replace(data, train=data.train.take(first), val=val, test=val)
        # in float32: the check is of the code, not of the arithmetic the study chooses
        loop = LoopConfig(budget=epoch_budget(1, len(small.train)), device=str(prepared.device))
        with torch.random.fork_rng(devices=[]):  # the study's random streams stay untouched
            training = TrialTraining(task, hp, small.channels_last(), loop, seed=0)
            try:
                if next(training.steps(), None) is None:
                    raise RuntimeError("its training ended before its first step (or report)")
                scores = task.evaluate(
                    training.parts, hp, training.data, training.data.val, training.context()
                )
            finally:
                task.release(training.parts)
    except SpecError:
        raise
    except Exception as exc:  # the user's code failed: say where, in one line
        raise SpecError(f"{what}: {where(exc, own_definition(task))}") from None
    if task.metric not in scores:
        raise SpecError(
            f"{what}: evaluate returned no '{task.metric}' (the task's metric); it returned "
            f"{', '.join(scores) or 'nothing'}"
        )


def _default_params(space: SearchSpace) -> dict[str, Any]:
    """The default configuration's parameters; a default outside a narrowed range (which a
    study's sampler would draw) takes the middle of the range."""
    params = space.default_trial_params()
    for param in space.params:  # one it leaves out is inactive or out of its range
        params.setdefault(param.name, default_value(param))
    return params
