"""Tasks and the one shared trial loop: how a model family trains and is scored.

The public contract for a task of one's own: subclass `Task`, describe its hyperparameters as
a dataclass and its search space with `Param`s (`space_from`), and build `Parts`; the loop
(`Objective`) does the rest. Nothing here knows the command line, storage URLs or processes.

The names below load on first use, so importing a light module of this package
(`tunelab.objectives.budget`, `tunelab.objectives.keys`) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "base": ("Finalization", "Parts", "ServingModel", "StepContext", "Task", "latent_example"),
    "budget": ("TrialBudget", "epoch_budget"),
    "data": ("DataBundle", "DataError", "DataSpec", "Split", "load_data"),
    "optim": ("OptimizerHParams", "optimizer_for", "optimizer_params"),
    "recorders": ("MemoryRecorder", "NullRecorder", "RunStatus", "TrialRecorder"),
    "registry": ("get_task", "task_names"),
    "runner": ("Diverged", "LoopConfig", "Objective", "retrain"),
    "space": ("Bounds", "Param", "SearchSpace", "SearchSpaceError", "fields_of", "space_from"),
}
_HOME = {name: module for module, names in _PUBLIC.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
