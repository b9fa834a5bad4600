"""Tasks and the one shared trial loop: how a model family trains and is scored.

The public contract for a task of one's own: subclass `Task`, describe its hyperparameters as
a dataclass and its search space with `Param`s (`space_from`), and build `Parts`; the loop
(`Objective`) does the rest. Nothing here knows the command line, storage URLs or processes.
"""

from tunelab.objectives.base import (
    EpochContext,
    Finalization,
    Parts,
    ServingModel,
    Task,
    latent_example,
)
from tunelab.objectives.data import DataBundle, DataError, DataSpec, Split, load_data
from tunelab.objectives.optim import OptimizerHParams, optimizer_for, optimizer_params
from tunelab.objectives.recorders import MemoryRecorder, NullRecorder, RunStatus, TrialRecorder
from tunelab.objectives.registry import get_task, task_names
from tunelab.objectives.runner import Diverged, LoopConfig, Objective
from tunelab.objectives.space import Param, SearchSpace, SearchSpaceError, fields_of, space_from

__all__ = [
    "DataBundle",
    "DataError",
    "DataSpec",
    "Diverged",
    "EpochContext",
    "Finalization",
    "LoopConfig",
    "MemoryRecorder",
    "NullRecorder",
    "Objective",
    "OptimizerHParams",
    "Param",
    "Parts",
    "RunStatus",
    "SearchSpace",
    "SearchSpaceError",
    "ServingModel",
    "Split",
    "Task",
    "TrialRecorder",
    "fields_of",
    "get_task",
    "latent_example",
    "load_data",
    "optimizer_for",
    "optimizer_params",
    "space_from",
    "task_names",
]
