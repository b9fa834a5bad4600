"""The task contract: what the shared trial loop needs from a model family.

A task has a name, a metric, a direction and five steps: `suggest` (search space ->
hyperparameter dataclass), `build` (modules and optimizers for a trial budget), `train_step`
(one optimizer step on one batch), `evaluate` (score a split) and `finalize` (final metrics and
artifacts of the best weights). The loop in `runner.py` (over `training.py`) drives them: it
owns the batches, the rungs, logging, early stopping and checkpoints, and asks the scheduler
at each rung whether to go on; a task never loops over data or decides to stop.

Three ways in, from the least code to the most control:

- a training loop of one's own, kept as it is: a function decorated with `@tunelab.objective`
  that suggests, resumes and reports through its `tunelab.TrialHandle` (`functional.py`);
- a classifier: subclass `tunelab.ClassifierTask` with a model function and a search space;
  the training step, evaluation, final metrics and registered model come with it
  (`classifier.py`);
- anything else: subclass `Task` below.

This is tunelab's public, versioned contract for tasks of one's own (`tunelab.Task`): a task
outside the package is named `package.module:Class` on the command line, or registered by its
distribution under the `tunelab.tasks` entry-point group (see `registry.py`). A task says the
contract version it was written for in `api_version`; tunelab refuses one it cannot drive.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import optuna
import torch

from tunelab.objectives.budget import TrialBudget
from tunelab.objectives.data import DataBundle, Split
from tunelab.objectives.graphs import GraphStep
from tunelab.objectives.metrics import MetricInfo
from tunelab.objectives.space import SearchSpace

TASK_API_VERSION = 1
"""Version of the task contract below. It changes only when a change would break a task written
for the previous version (a step renamed, an argument added); additions with defaults keep it."""
SUPPORTED_TASK_API_VERSIONS = (1,)
"""Contract versions this tunelab drives."""
EXAMPLE_ROWS = 4
"""Rows of a registered model's input example."""


@dataclass
class Parts:
    """Everything a trial trains: modules and optimizers by name, plus task-specific state."""

    modules: dict[str, torch.nn.Module]
    """Networks by name (e.g. model, or generator and discriminator)."""
    optimizers: dict[str, torch.optim.Optimizer]
    """Optimizers by name."""
    schedulers: dict[str, Any] = field(default_factory=dict)
    """Learning-rate schedulers by name, stepped by the task."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Tensors the task keeps across epochs (fixed noise, feature statistics)."""

    def state_dict(self) -> dict[str, Any]:
        return {
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for kind, items in (
            ("modules", self.modules),
            ("optimizers", self.optimizers),
            ("schedulers", self.schedulers),
        ):
            for name, obj in items.items():
                obj.load_state_dict(state[kind][name])

    def module_state(self) -> dict[str, dict[str, torch.Tensor]]:
        """A detached CPU copy of every module's weights (the best-epoch snapshot)."""
        return {
            name: {k: v.detach().to("cpu", copy=True) for k, v in m.state_dict().items()}
            for name, m in self.modules.items()
        }

    def load_module_state(self, state: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        for name, module in self.modules.items():
            module.load_state_dict(state[name])


@dataclass(frozen=True)
class StepContext:
    """Where a trial's training stands: what a step, an evaluation or an artifact may need."""

    epoch: int
    """The epoch this step belongs to, from 1."""
    step: int
    """Optimizer steps so far, this one included (from 1; 0 before the first)."""
    progress: float
    """Epochs of training done before this step (images seen / training split size)."""
    budget: TrialBudget
    """The trial's budget (schedules and warm-ups span it)."""
    generator: torch.Generator
    """The trial's random stream for shuffling, augmentation and noise."""


@dataclass
class Finalization:
    """Final metrics and artifacts of a complete trial, computed with the best epoch's weights."""

    metrics: dict[str, float] = field(default_factory=dict)
    """Final metrics (e.g. val_f1), logged once."""
    artifacts: dict[str, bytes] = field(default_factory=dict)
    """Files by relative artifact path (e.g. confusion_matrix.png)."""


@dataclass(frozen=True)
class ServingModel:
    """The module a study registers in MLflow's Model Registry, with an input example."""

    module: torch.nn.Module
    """A CPU module in eval mode."""
    example: torch.Tensor
    """A small input batch (its signature and example in the registry)."""
    kind: str
    """What it is, recorded as a model-version tag (classifier, generator, vae-decoder...)."""


def latent_example(latent_dim: int, seed: int) -> torch.Tensor:
    """A seeded batch of standard-normal latent codes: the input example of a decoder."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(EXAMPLE_ROWS, latent_dim, generator=generator)


class Task(abc.ABC):
    """A model family trained and scored by the shared trial loop."""

    name: ClassVar[str]
    """CLI name of the task."""
    metric: str
    """Name of the objective metric returned by `evaluate` (may be set per instance)."""
    direction: ClassVar[Literal["maximize", "minimize"]]
    """Whether a higher or a lower metric is better."""
    hparams_type: ClassVar[type]
    """The typed hyperparameter dataclass of this task."""
    api_version: ClassVar[int] = TASK_API_VERSION
    """The task contract version the task was written for (TASK_API_VERSION when written)."""

    @abc.abstractmethod
    def search_space(self) -> SearchSpace:
        """The task's full search space with its defaults."""

    def space_for_metrics(self, metrics: Collection[str]) -> Mapping[str, Any]:
        """How a study that optimizes or constrains `metrics` reshapes `search_space()`, as a
        narrowing inside what the task supports: e.g. the small end of the widths when model
        size is an objective or bounded. The user's own narrowing applies after it. None by
        default."""
        return {}

    def anchor_configurations(self, objectives: Sequence[str]) -> list[Mapping[str, Any]]:
        """Changes to the default configuration that a study of `objectives` (the primary
        first) trains right after the default: the other end of its front, e.g. the smallest
        model when size is an objective, so the front's cheap end is trained from the start
        rather than left to chance. None by default."""
        return []

    def suggest(self, trial: optuna.trial.BaseTrial, space: SearchSpace) -> Any:
        """Sample one configuration from (a narrowed copy of) the search space."""
        return self.hparams_type(**space.suggest(trial))

    @abc.abstractmethod
    def build(self, hp: Any, data: DataBundle, device: torch.device, budget: TrialBudget) -> Parts:
        """Models, optimizers and schedulers for this configuration, on the device; schedules
        span `budget.steps(batch_size)` optimizer steps."""

    def batch_size(self, hp: Any) -> int:
        """Training images per step (the hyperparameters' batch_size by default)."""
        return int(hp.batch_size)

    @abc.abstractmethod
    def train_step(
        self, parts: Parts, hp: Any, x: torch.Tensor, y: torch.Tensor, ctx: StepContext
    ) -> dict[str, torch.Tensor]:
        """One optimizer step on one batch; returns train_* metrics of this step as detached
        scalar tensors (left on the device: the loop averages them without a sync per step).
        A metric a step does not compute (e.g. the GAN's generator loss on a discriminator-
        only step) is left out and averaged over the steps that have it."""

    def graph_step(self, parts: Parts, hp: Any) -> GraphStep | None:
        """`train_step` as a function the loop may capture once as a CUDA graph and replay
        for every batch, or None (the default: every step runs `train_step`). Asked only on a
        CUDA device in float32. The function takes (images, labels, generator) and returns
        the step's metrics; it must launch the same kernels at every call (no `.item()`, no
        branch on the step or the data, no `StepContext`, random draws from `generator` or
        the default CUDA generator), with optimizers built capturable (`optimizer_for(...,
        capturable=True)`). It leaves out what `train_step` does on the host: the loop steps
        every scheduler in `parts.schedulers` after each replay."""
        return None

    @abc.abstractmethod
    def evaluate(
        self, parts: Parts, hp: Any, data: DataBundle, split: Split, ctx: StepContext
    ) -> dict[str, float]:
        """Score `split` (the rung split or the whole validation split); returns val_*
        metrics, the objective among them."""

    def metrics(self) -> tuple[MetricInfo, ...]:
        """What a study may optimize or constrain (`--objectives`, `--constraint`): the
        task's objective first, then what `evaluate` scores and `static_metrics` measures."""
        return (MetricInfo(self.metric, self.direction, description="the task's objective"),)

    def static_metrics(self, parts: Parts, data: DataBundle) -> dict[str, float]:
        """The static metrics of `metrics()` for the built, untrained modules (parameters,
        MACs, latency): known before training. Called only by studies that use them."""
        return {}

    def trial_tags(self, data: DataBundle) -> dict[str, str]:
        """Tags for every trial's run (e.g. the feature space and checksum of a metric model)."""
        return {}

    def epoch_artifacts(
        self, parts: Parts, hp: Any, data: DataBundle, ctx: StepContext
    ) -> dict[str, bytes]:
        """Files to log after each epoch (e.g. a fixed-noise sample grid); none by default."""
        return {}

    @abc.abstractmethod
    def finalize(self, parts: Parts, hp: Any, data: DataBundle) -> Finalization:
        """Final metrics and artifacts of a complete trial (best weights loaded)."""

    def release(self, parts: Parts) -> None:
        """The trial's training is over, however it ended (complete, stopped, failed): let go
        of what `build` holds besides the modules (a function-style objective stops its
        function's thread here). Nothing by default."""
        return None

    def serving_model(self, parts: Parts, data: DataBundle, seed: int) -> ServingModel:
        """The module worth registering from a trained trial, with an input example.

        By default the task's only module, fed a few test images; tasks with several modules
        (or whose useful half is not the whole network) say which.
        """
        if len(parts.modules) != 1:
            raise NotImplementedError(
                f"task {self.name!r} has modules {', '.join(parts.modules)}: "
                "override serving_model to say which one to register"
            )
        (module,) = parts.modules.values()
        example = data.test.x[:EXAMPLE_ROWS].to("cpu")
        return ServingModel(module.to("cpu").eval(), example, kind="model")

    def better(self, a: float, b: float) -> bool:
        """Whether value a beats value b in this task's direction."""
        return a > b if self.direction == "maximize" else a < b
