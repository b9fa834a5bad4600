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
`report`, `evaluate`, `tasks`, see `tunelab.api`) and the three ways in for a model of one's
own: a training loop kept as it is (`@tunelab.objective` on a function of a
`tunelab.TrialHandle`), a classifier from a model function (`tunelab.ClassifierTask`, with
`OptimizerHParams`), and the task contract (`tunelab.Task`, versioned by
`tunelab.TASK_API_VERSION`, with `Parts`, `StepContext`, `Finalization`, `Param`,
`space_from`); data of one's own split as `tunelab.DataBundle.from_arrays(...)`.
"""

from pkgutil import extend_path
from typing import TYPE_CHECKING

from tunelab import api

# Installed, this package holds the repository's folders `models/`, `objectives/` and `search/`
# (pyproject.toml's package-dir; a strict editable install links them into build/). From the
# repository root, where the working directory comes first on sys.path (`python -c`,
# `python -m`, editors), the bare folder `tunelab/` is found first: extend_path adds the
# installed one, so its sub-packages are found there. Jedi follows this line too.
__path__ = extend_path(__path__, __name__)

if TYPE_CHECKING:  # the public names' real types for type checkers and editors (see _PUBLIC)
    from tunelab.api import best_trial as best_trial
    from tunelab.api import best_trials as best_trials
    from tunelab.api import create as create
    from tunelab.api import evaluate as evaluate
    from tunelab.api import load as load
    from tunelab.api import report as report
    from tunelab.api import run as run
    from tunelab.api import spec as spec
    from tunelab.api import tasks as tasks
    from tunelab.objectives.base import TASK_API_VERSION as TASK_API_VERSION
    from tunelab.objectives.base import Finalization as Finalization
    from tunelab.objectives.base import Parts as Parts
    from tunelab.objectives.base import ServingModel as ServingModel
    from tunelab.objectives.base import StepContext as StepContext
    from tunelab.objectives.base import Task as Task
    from tunelab.objectives.budget import TrialBudget as TrialBudget
    from tunelab.objectives.classifier import ClassifierTask as ClassifierTask
    from tunelab.objectives.data import DataBundle as DataBundle
    from tunelab.objectives.data import Split as Split
    from tunelab.objectives.functional import TrialEnded as TrialEnded
    from tunelab.objectives.functional import TrialHandle as TrialHandle
    from tunelab.objectives.functional import objective as objective
    from tunelab.objectives.optim import OptimizerHParams as OptimizerHParams
    from tunelab.objectives.space import Param as Param
    from tunelab.objectives.space import SearchSpace as SearchSpace
    from tunelab.objectives.space import space_from as space_from
    from tunelab.search.spec import SpecError as SpecError
    from tunelab.search.spec import StudySpec as StudySpec

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
    "tunelab.objectives.classifier": ("ClassifierTask",),
    "tunelab.objectives.data": ("DataBundle", "Split"),
    "tunelab.objectives.functional": ("TrialEnded", "TrialHandle", "objective"),
    "tunelab.objectives.optim": ("OptimizerHParams",),
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
