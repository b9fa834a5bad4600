"""The task registry: a task's name -> its class, imported only when asked for.

A task is found three ways, in this order: a built-in name (`cnn`, `gan`, `vae`), a name that
an installed distribution registers under the `tunelab.tasks` entry-point group, or a
reference `package.module:Class` to any importable class, or to a function decorated with
`@tunelab.objective` (a function-style objective, `functional.py`). The name a study was
created with is stored on it, so its workers, `report` and `evaluate` resolve the same task;
a class or function handed to the Python API is stored as its `module:qualname`
(`reference_of`), which a script's own classes (module `__main__`) resolve to in that script
only.

A distribution registers its tasks in its own `pyproject.toml`:

    [project.entry-points."tunelab.tasks"]
    flowers = "my_package.tasks:FlowerTask"
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
import re
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from tunelab.objectives.base import SUPPORTED_TASK_API_VERSIONS, TASK_API_VERSION, Task

BUILTIN_TASKS = {
    "cnn": "tunelab.objectives.classification:ClassificationTask",
    "gan": "tunelab.objectives.gan:GANTask",
    "vae": "tunelab.objectives.vae:VAETask",
}
ENTRY_POINT_GROUP = "tunelab.tasks"
"""The entry-point group in which other distributions register their tasks."""
_NAME = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
REFERENCE = re.compile(rf"^{_NAME}:{_NAME}$")
"""`package.module:Class` (or `module:Outer.Inner`, a class's qualified name)."""
SCRIPT = "__main__"
"""The module of the script Python runs: other processes cannot import its classes."""


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
    """The class of a task name or reference; TaskError with one line when it cannot be used.
    A reference to a function decorated with `@tunelab.objective` gives its adapter class."""
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
    except Exception as exc:  # the module itself raised (a syntax error, any error of its own)
        raise TaskError(f"task '{name}': importing {module_name} failed: {where(exc)}") from None
    cls = _attribute(module, class_name)
    if cls is None:
        if module_name == SCRIPT:
            raise TaskError(
                f"task '{name}' was defined in the script that created the study, which this "
                "process cannot import: move it to a module (my_tasks.py) and name it "
                "my_tasks:" + class_name.rpartition(".")[2]
            )
        raise TaskError(f"task '{name}': {module_name} has no class named {class_name}")
    from tunelab.objectives.functional import function_task, is_objective

    if is_objective(cls):
        cls = function_task(cls)
    elif callable(cls) and not isinstance(cls, type):
        raise TaskError(
            f"task '{name}': {target} is a function: decorate it with "
            "@tunelab.objective(metric=..., direction=...) to tune it as a function-style "
            "objective"
        )
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


def _attribute(module: Any, qualname: str) -> Any:
    """`module`'s attribute at a qualified name (`Outer.Inner`), or None."""
    found: Any = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
        if found is None:
            return None
    return found


def reference_of(obj: Any) -> str:
    """The `module:qualname` by which a task class, or a function decorated with
    `@tunelab.objective`, is found again (what a study stores); TaskError with one line for
    what cannot be found by name: a lambda, or what a function defines inside itself."""
    if isinstance(obj, str):
        return obj
    is_task = isinstance(obj, type) and issubclass(obj, Task)
    from tunelab.objectives.functional import is_objective, objective_function

    if not is_task and not is_objective(obj):
        what = type(obj).__name__ if not callable(obj) else getattr(obj, "__qualname__", obj)
        hint = (
            ": decorate it with @tunelab.objective(metric=..., direction=...)"
            if callable(obj) and not isinstance(obj, type)
            else ""
        )
        raise TaskError(
            f"task {what!s} is neither a name, a tunelab.Task subclass nor a function-style "
            f"objective{hint}"
        )
    target = objective_function(obj) if is_objective(obj) else obj
    module, qualname = target.__module__, target.__qualname__
    if "<lambda>" in qualname or "<locals>" in qualname:
        kind = (
            "a lambda"
            if "<lambda>" in qualname
            else f"{qualname.split('.')[-1]}, defined in a function,"
        )
        raise TaskError(
            f"task {kind} cannot be found again by name (by a worker, `report` or "
            "`evaluate`): define it at the top level of a module or script"
        )
    return f"{module}:{qualname}"


def in_this_process_only(reference: str) -> bool:
    """Whether only this process can import the task (a class of the script being run)."""
    return reference.partition(":")[0] == SCRIPT


def where(error: BaseException, fallback: Any = None) -> str:
    """An error in one line, with the file and line of the user's code that raised it: the
    innermost frame outside Python, its libraries and tunelab itself (a model's forward, a
    task's search space). When no user code was on the way (a torch layer of the wrong size
    called by tunelab's loop), the definition of `fallback` (a class or function of the
    user's), else tunelab's own frame."""
    if isinstance(error, SyntaxError):
        return f"{error.msg} ({error.filename}, line {error.lineno})"
    frames = traceback.extract_tb(error.__traceback__)
    outside = [f for f in frames if not f.filename.startswith(("<", sys.prefix, sys.base_prefix))]
    own = [f for f in outside if not _is_tunelab(f.filename)]
    if own:
        at = f" ({own[-1].filename}, line {own[-1].lineno})"
    else:
        at = defined_at(fallback) if fallback is not None else ""
        if not at and outside:
            at = f" ({outside[-1].filename}, line {outside[-1].lineno})"
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}{at}"[:600]


def defined_at(obj: Any) -> str:
    """` (FILE, line N)` of a class's or function's definition, where its source is at hand."""
    import inspect

    try:
        return f" ({inspect.getsourcefile(obj)}, line {inspect.getsourcelines(obj)[1]})"
    except (OSError, TypeError):
        return ""


def _is_tunelab(filename: str) -> bool:
    """Whether a traceback's file is tunelab's own (as imported, or its repository folder)."""
    path = Path(filename)
    resolved = path.resolve()
    return any(root in path.parents or root in resolved.parents for root in _tunelab_roots())


@functools.cache
def _tunelab_roots() -> tuple[Path, ...]:
    """tunelab's package as imported (installed editable: a tree of links) and the repository
    folders behind it."""
    here = Path(__file__)
    roots = {here.parent.parent}  # .../tunelab, as imported
    repository = here.resolve().parent.parent
    roots.update(repository / sub for sub in ("models", "objectives", "search", "tunelab"))
    return tuple(roots)


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
