"""The task registry: a task's CLI name -> its class, imported only when asked for."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import Any

from tunelab.objectives.base import Task

BUILTIN_TASKS = {
    "cnn": "tunelab.objectives.classification:ClassificationTask",
    "gan": "tunelab.objectives.gan:GANTask",
    "vae": "tunelab.objectives.vae:VAETask",
}


def task_names() -> list[str]:
    return list(BUILTIN_TASKS)


def get_task(name: str, options: Mapping[str, Any] | None = None) -> Task:
    """A fresh task object; ValueError for an unknown name or option.

    `options` are task-specific settings that are not searched (e.g. the GAN's feature space);
    a task that takes none accepts only an empty mapping.
    """
    if name not in BUILTIN_TASKS:
        raise ValueError(f"unknown task '{name}'; known: {', '.join(BUILTIN_TASKS)}")
    module, cls = BUILTIN_TASKS[name].split(":")
    task_cls = getattr(importlib.import_module(module), cls)
    options = dict(options or {})
    if not options:
        return task_cls()
    if getattr(task_cls, "options_type", None) is None:
        raise ValueError(f"task '{name}' takes no task options (got {', '.join(options)})")
    known = {f.name for f in dataclasses.fields(task_cls.options_type)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for task '{name}'; "
            f"known: {', '.join(sorted(known))}"
        )
    return task_cls(task_cls.options_type(**options))
