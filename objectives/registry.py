"""The task registry: a task's name -> its class, imported only when asked for.

A task is found three ways, in this order: a built-in name (`cnn`, `gan`, `vae`), a name that
an installed distribution registers under the `tunelab.tasks` entry-point group, or a
reference `package.module:Class` to any importable class. The name a study was created with
is stored on it, so its workers, `report` and `evaluate` resolve the same task.

A distribution registers its tasks in its own `pyproject.toml`:

    [project.entry-points."tunelab.tasks"]
    flowers = "my_package.tasks:FlowerTask"
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from tunelab.objectives.base import SUPPORTED_TASK_API_VERSIONS, TASK_API_VERSION, Task

BUILTIN_TASKS = {
    "cnn": "tunelab.objectives.classification:ClassificationTask",
    "gan": "tunelab.objectives.gan:GANTask",
    "vae": "tunelab.objectives.vae:VAETask",
}
ENTRY_POINT_GROUP = "tunelab.tasks"
"""The entry-point group in which other distributions register their tasks."""
REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
"""`package.module:Class`."""


class TaskError(ValueError):
    """A task that cannot be found, imported or driven: one line for the user."""


@dataclass(frozen=True)
class TaskEntry:
    """One task tunelab can run, before it is imported."""

    name: str
    """The name to pass to `tunelab run`."""
    target: str
    """`package.module:Class`."""
    source: str
    """Where it comes from: built-in, or the distribution that registers it."""


def is_reference(name: str) -> bool:
    """Whether `name` is a `package.module:Class` reference."""
    return bool(REFERENCE.match(name))


def registered_tasks() -> dict[str, TaskEntry]:
    """The built-in tasks and those of installed distributions, by name (built-ins win)."""
    found = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(point, "dist", None)
        source = f"{dist.name} {dist.version}" if dist is not None else "entry point"
        found[point.name] = TaskEntry(point.name, point.value, source)
    found.update({n: TaskEntry(n, t, "built-in") for n, t in BUILTIN_TASKS.items()})
    return found


def task_names() -> list[str]:
    return list(registered_tasks())


def known_task(name: str) -> bool:
    """Whether `name` is a registered name or a well-formed reference (without importing it)."""
    return name in registered_tasks() or is_reference(name)


def task_class(name: str) -> type[Task]:
    """The class of a task name or reference; TaskError with one line when it cannot be used."""
    entry = registered_tasks().get(name)
    if entry is None and not is_reference(name):
        known = ", ".join(registered_tasks())
        raise TaskError(f"unknown task '{name}'; known: {known}, or package.module:Class")
    target = entry.target if entry is not None else name
    module_name, _, class_name = target.partition(":")
    try:
        module = _import(module_name)
    except ImportError as exc:
        raise TaskError(f"task '{name}': cannot import {module_name}: {exc}") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TaskError(f"task '{name}': {target} is not a subclass of tunelab.Task")
    if getattr(cls, "__abstractmethods__", None):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise TaskError(f"task '{name}': {target} does not implement {missing}")
    version = getattr(cls, "api_version", None)
    if version not in SUPPORTED_TASK_API_VERSIONS:
        raise TaskError(
            f"task '{name}' was written for task API version {version}; this tunelab drives "
            f"version {TASK_API_VERSION}"
        )
    return cls


def _import(module_name: str):
    """Import a user's module; like uvicorn and gunicorn, the current folder counts as a
    source of modules, so `tunelab run my_tasks:MyTask` finds ./my_tasks.py."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        top = module_name.split(".")[0]
        if exc.name != top or os.getcwd() in sys.path:
            raise
    sys.path.insert(0, os.getcwd())
    return importlib.import_module(module_name)


def get_task(name: str, options: Mapping[str, Any] | None = None) -> Task:
    """A fresh task object; ValueError (TaskError) for an unknown name or option.

    `options` are task-specific settings that are not searched (e.g. the GAN's feature space);
    a task that takes none accepts only an empty mapping.
    """
    task_cls = task_class(name)
    options = dict(options or {})
    if not options:
        return task_cls()
    if getattr(task_cls, "options_type", None) is None:
        raise TaskError(f"task '{name}' takes no task options (got {', '.join(options)})")
    known = {f.name for f in dataclasses.fields(task_cls.options_type)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TaskError(
            f"unknown option(s) {', '.join(unknown)} for task '{name}'; "
            f"known: {', '.join(sorted(known))}"
        )
    return task_cls(task_cls.options_type(**options))
