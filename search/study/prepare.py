"""Everything a user can get wrong, checked before anything is written anywhere."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from tunelab.objectives.base import Task
from tunelab.objectives.data import DataBundle, DataError, DataSpec, load_data
from tunelab.objectives.registry import get_task
from tunelab.objectives.space import SearchSpace, SearchSpaceError
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
    # JSON round trip: what a resumed study reads back compares equal to a new study's
    metrics_space = json.loads(json.dumps(task.space_for_metrics(objectives.used_metrics)))
    space = study_space(task, metrics_space, spec.params)
    check_database(spec.storage, what="storage")
    check_tracking_uri(spec.tracking_uri)
    check_checkpoint_location(spec.checkpoint_dir, spec.tracking_uri)
    device = resolve_device(spec.device)
    try:
        data = load_data(
            DataSpec(name=spec.dataset, data_dir=spec.data_dir, limit_train=spec.limit_train),
            device,
        )
    except DataError as exc:
        raise SpecError(str(exc)) from None
    return Prepared(
        spec=spec,
        task=task,
        space=space,
        data=data,
        device=device,
        objectives=objectives,
        metrics_space=metrics_space,
    )
