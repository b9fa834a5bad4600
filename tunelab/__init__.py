"""tunelab: hyperparameter search and experiment tracking for PyTorch image models.

One import name, three layers (each imports only the ones before it):

- `tunelab.models`: plain `nn.Module`s with typed configs.
- `tunelab.objectives`: the task contract, the one shared trial loop, the built-in tasks,
  data sets and search spaces.
- `tunelab.search`: the study: its options (`StudySpec`), the command line, running a study,
  the adapters to Optuna storage and MLflow, and the analysis commands.

In the repository the three layers are the top-level folders `models/`, `objectives/` and
`search/`; installing tunelab maps them under this package.

Public here: the Python API (`tunelab.run`, `create`, `load`, `best_trial`, `best_trials`,
`report`, `evaluate`, `tasks`, see `tunelab.api`) and the task contract for models of one's
own (`tunelab.Task`, versioned by `tunelab.TASK_API_VERSION`, with `Parts`, `StepContext`,
`Finalization`, `Param`, `space_from`).
"""

from tunelab import api

__version__ = "0.2.0"
"""The version of the distribution."""

# The public names load on first use: `import tunelab` imports neither torch, Optuna nor
# MLflow (a worker's start and `tunelab --help` stay fast).
_PUBLIC = {
    "tunelab.api": tuple(api.__all__),  # api.py itself is light: it imports on call
    "tunelab.objectives.base": (
        "TASK_API_VERSION",
        "Finalization",
        "Parts",
        "ServingModel",
        "StepContext",
        "Task",
    ),
    "tunelab.objectives.budget": ("TrialBudget",),
    "tunelab.objectives.data": ("DataBundle", "Split"),
    "tunelab.objectives.space": ("Param", "SearchSpace", "space_from"),
    "tunelab.search.spec": ("SpecError", "StudySpec"),
}
_HOME = {name: module for module, names in _PUBLIC.items() for name in names}
__all__ = ["__version__", *sorted(_HOME)]


def __getattr__(name: str):
    import importlib

    if name not in _HOME:
        raise AttributeError(f"module 'tunelab' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
