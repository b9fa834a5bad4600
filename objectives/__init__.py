"""Tasks and the one shared trial loop: how a model family trains and is scored.

The public contract for a task of one's own: subclass `Task`, describe its hyperparameters as
a dataclass and its search space with `Param`s (`space_from`), and build `Parts`; the loop
(`Objective`) does the rest. Less code for the common cases: `ClassifierTask` (a model
function and a search space) and function-style objectives (`objective`, a training loop of
one's own with a `TrialHandle`), both driven by the same loop. Nothing here knows the command
line, storage URLs or processes.

The names below load on first use, so importing a light module of this package
(`tunelab.objectives.budget`, `tunelab.objectives.keys`) does not import torch.
"""

from __future__ import annotations

if not __name__.startswith("tunelab."):  # the repository folder, imported by its bare name
    raise ImportError(
        f"import tunelab.{__name__}, not {__name__}: the folder installs as tunelab.{__name__} "
        "(a second name would load every module twice)"
    )

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the public names' real types for type checkers and editors (see _PUBLIC)
    from tunelab.objectives.base import Finalization as Finalization
    from tunelab.objectives.base import Parts as Parts
    from tunelab.objectives.base import ServingModel as ServingModel
    from tunelab.objectives.base import StepContext as StepContext
    from tunelab.objectives.base import Task as Task
    from tunelab.objectives.base import latent_example as latent_example
    from tunelab.objectives.budget import TrialBudget as TrialBudget
    from tunelab.objectives.budget import epoch_budget as epoch_budget
    from tunelab.objectives.classifier import ClassifierTask as ClassifierTask
    from tunelab.objectives.data import DataBundle as DataBundle
    from tunelab.objectives.data import DataError as DataError
    from tunelab.objectives.data import DataSpec as DataSpec
    from tunelab.objectives.data import Split as Split
    from tunelab.objectives.data import load_data as load_data
    from tunelab.objectives.functional import FunctionTask as FunctionTask
    from tunelab.objectives.functional import TrialEnded as TrialEnded
    from tunelab.objectives.functional import TrialHandle as TrialHandle
    from tunelab.objectives.functional import objective as objective
    from tunelab.objectives.optim import OptimizerHParams as OptimizerHParams
    from tunelab.objectives.optim import optimizer_for as optimizer_for
    from tunelab.objectives.optim import optimizer_params as optimizer_params
    from tunelab.objectives.recorders import MemoryRecorder as MemoryRecorder
    from tunelab.objectives.recorders import NullRecorder as NullRecorder
    from tunelab.objectives.recorders import RunStatus as RunStatus
    from tunelab.objectives.recorders import TrialRecorder as TrialRecorder
    from tunelab.objectives.registry import get_task as get_task
    from tunelab.objectives.registry import task_names as task_names
    from tunelab.objectives.runner import Objective as Objective
    from tunelab.objectives.session import Ruling as Ruling
    from tunelab.objectives.session import TrialSession as TrialSession
    from tunelab.objectives.session import Verdict as Verdict
    from tunelab.objectives.space import Bounds as Bounds
    from tunelab.objectives.space import Param as Param
    from tunelab.objectives.space import SearchSpace as SearchSpace
    from tunelab.objectives.space import SearchSpaceError as SearchSpaceError
    from tunelab.objectives.space import fields_of as fields_of
    from tunelab.objectives.space import space_from as space_from
    from tunelab.objectives.training import Diverged as Diverged
    from tunelab.objectives.training import LoopConfig as LoopConfig
    from tunelab.objectives.training import retrain as retrain

_PUBLIC = {
    "base": ("Finalization", "Parts", "ServingModel", "StepContext", "Task", "latent_example"),
    "budget": ("TrialBudget", "epoch_budget"),
    "classifier": ("ClassifierTask",),
    "data": ("DataBundle", "DataError", "DataSpec", "Split", "load_data"),
    "functional": ("FunctionTask", "TrialEnded", "TrialHandle", "objective"),
    "optim": ("OptimizerHParams", "optimizer_for", "optimizer_params"),
    "recorders": ("MemoryRecorder", "NullRecorder", "RunStatus", "TrialRecorder"),
    "registry": ("get_task", "task_names"),
    "runner": ("Objective",),
    "session": ("Ruling", "TrialSession", "Verdict"),
    "space": ("Bounds", "Param", "SearchSpace", "SearchSpaceError", "fields_of", "space_from"),
    "training": ("Diverged", "LoopConfig", "retrain"),
}
_HOME = {name: module for module, names in _PUBLIC.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
