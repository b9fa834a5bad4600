"""`tunelab tasks`: the tasks tunelab can run, built in or registered by other distributions."""

from __future__ import annotations


def tasks() -> None:
    """List the tasks: built-in ones and those registered under the `tunelab.tasks` entry
    points; any class is also runnable as package.module:Class."""
    from rich.console import Console
    from rich.table import Table

    from tunelab.objectives.registry import TaskError, registered_tasks, task_class

    table = Table("task", "metric", "direction", "class", "from")
    for entry in registered_tasks().values():
        try:
            cls = task_class(entry.name)
            metric = str(getattr(cls, "metric", "set by its options"))
            direction = cls.direction
        except TaskError as exc:  # a broken plugin is listed with its reason, not fatal
            metric, direction = "-", f"unusable: {exc}"
        table.add_row(entry.name, metric, direction, entry.target, entry.source)
    console = Console()
    if not console.is_terminal:  # piped: don't squeeze the table into 80 columns
        console = Console(width=200)
    console.print(table)
    print("any other task: tunelab run package.module:Class (a subclass of tunelab.Task)")
