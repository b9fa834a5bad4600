"""Finding tasks: built-in names, `module:Class` references, `tunelab.tasks` entry points."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tunelab.objectives.base import TASK_API_VERSION, Task
from tunelab.objectives.registry import (
    ENTRY_POINT_GROUP,
    TaskError,
    get_task,
    known_task,
    registered_tasks,
    task_class,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def fake_distribution(root: Path, name: str, target: str) -> None:
    """An installed distribution (its dist-info on sys.path) that registers one task."""
    info = root / "tunelab_plugin_test-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tunelab-plugin-test\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{name} = {target}\n")


def test_a_task_is_found_by_module_and_class(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    task = get_task("shapes:ShapesTask")
    assert isinstance(task, Task) and task.metric == "val_accuracy"
    assert task.api_version == TASK_API_VERSION
    assert known_task("shapes:ShapesTask") and not known_task("shapes")


def test_a_task_is_found_by_its_entry_point(tmp_path, monkeypatch):
    fake_distribution(tmp_path, "shapes", "shapes:ShapesTask")
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = registered_tasks()["shapes"]
    assert entry.source == "tunelab-plugin-test 0.1" and entry.target == "shapes:ShapesTask"
    assert known_task("shapes")
    assert type(get_task("shapes")).__name__ == "ShapesTask"


def test_a_module_in_the_current_folder_is_found(tmp_path, monkeypatch):
    (tmp_path / "my_tasks_here.py").write_text((EXAMPLES / "shapes.py").read_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", ".")])
    assert task_class("my_tasks_here:ShapesTask").name == "shapes"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("rnn", "unknown task 'rnn'"),
        ("no_such_module_xyz:Task", "cannot import no_such_module_xyz"),
        ("tunelab.objectives.base:Parts", "is not a subclass of tunelab.Task"),
        ("tunelab.objectives.base:Task", "does not implement"),
        ("old_tasks:OldTask", "written for task API version 99"),
    ],
)
def test_a_task_that_cannot_be_used_is_one_clear_error(name, message, tmp_path, monkeypatch):
    (tmp_path / "old_tasks.py").write_text(
        textwrap.dedent(
            """
            from shapes import ShapesTask

            class OldTask(ShapesTask):
                api_version = 99
            """
        )
    )
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TaskError, match=message) as error:
        get_task(name)
    assert "\n" not in str(error.value)
