"""The task registry: CLI name -> task class, imported only when asked for."""

from __future__ import annotations

import importlib

from objectives.base import Task

_TASKS = {
    "cnn": "objectives.classification:ClassificationTask",
}


def task_names() -> list[str]:
    return list(_TASKS)


def get_task(name: str) -> Task:
    """A fresh task object; ValueError for an unknown name."""
    if name not in _TASKS:
        raise ValueError(f"unknown task '{name}'; known: {', '.join(_TASKS)}")
    module, cls = _TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
