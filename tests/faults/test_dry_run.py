"""The mistakes a newcomer makes in their own task, through the real CLI in process: each is
one line on stderr that names the user's file and line, exit 2, no traceback, and nothing
written (no study, no MLflow store). The tasks are tests/faults/mistakes.py."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

HERE = Path(__file__).resolve().parent
MISTAKES = HERE / "mistakes.py"


def _run(task: str, *extra: str) -> list[str]:
    return [
        *("run", task, "--study-name", "s", "--storage", "sqlite:///s.db"),
        *("--tracking-uri", "sqlite:///mlruns/mlflow.db", "--n-trials", "1", *extra),
    ]


def _one_line_and_nothing_written(code: int, out: str, err: str, *wanted: str) -> str:
    assert code == 2, out + err
    assert "Traceback" not in out + err
    (line,) = err.strip().splitlines()
    assert line.startswith("tunelab: error: "), line
    for text in wanted:
        assert text in line, line
    assert sorted(p.name for p in Path.cwd().iterdir()) == [], "a refused run wrote something"
    return line


@pytest.mark.parametrize(
    ("task", "wanted"),
    [
        ("Typo", ["hiden"]),
        ("WrongSize", ["dry run of its default configuration", "mat1 and mat2", "line"]),
        ("RaisesInForward", ["dry run", "this forward is broken", "line"]),
    ],
)
def test_a_mistake_in_ones_own_task_is_one_line_naming_the_file_exit_2_nothing_written(
    tunelab, task, wanted
):
    line = _one_line_and_nothing_written(
        *tunelab(*_run(f"mistakes:{task}", "--dataset", "digits")), *wanted
    )
    assert str(MISTAKES) in line  # the user's file, where the mistake is


def test_a_misspelt_class_is_one_line(tunelab):
    _one_line_and_nothing_written(
        *tunelab(*_run("mistakes:Tpyo", "--dataset", "digits")), "has no class named Tpyo"
    )


def test_an_edited_search_space_on_an_existing_study_is_refused_in_one_line(tunelab, monkeypatch):
    code, out, err = tunelab(*_run("mistakes:editable"))
    assert code == 0, err
    monkeypatch.setenv("MISTAKES_CHOICES", "a,b,c")
    code, out, err = tunelab(*_run("mistakes:editable", "--n-trials", "2"))
    assert code == 2 and "Traceback" not in out + err, out + err
    (line,) = err.strip().splitlines()
    assert "was created with another search space" in line and "--study-name" in line, line
    assert "(c: (a, b) -> (a, b, c))" in line, line  # names what changed
    study = optuna.load_study(study_name="s", storage="sqlite:///s.db")
    assert len(study.trials) == 1  # nothing added by the refused rerun
