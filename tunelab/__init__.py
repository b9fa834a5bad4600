"""tunelab: hyperparameter search and experiment tracking for PyTorch image models.

One import name, three layers (each imports only the ones before it):

- `tunelab.models`: plain `nn.Module`s with typed configs.
- `tunelab.objectives`: the task contract, the one shared trial loop, the built-in tasks,
  data sets and search spaces.
- `tunelab.search`: the study: its options (`StudySpec`), the command line, running a study,
  the adapters to Optuna storage and MLflow, and the analysis commands.

In the repository the three layers are the top-level folders `models/`, `objectives/` and
`search/`; installing tunelab maps them under this package.
"""

__version__ = "0.2.0"
