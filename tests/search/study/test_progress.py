"""The running study's display: the time left, the running trial's line (wrapped, never cut),
the plain lines of --quiet, and the spinner before the first trial."""

from __future__ import annotations

import io

from rich.console import Console

from tunelab.objectives.budget import TrialBudget
from tunelab.objectives.recorders import MemoryRecorder
from tunelab.search.study.progress import StudyProgress, preparing

BUDGET = TrialBudget(unit="epochs", rung=1257, max_rungs=10, train_size=1257)


def _console(width: int = 60, terminal: bool = True) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=width, force_terminal=terminal, color_system=None), out


def test_time_left_from_the_deadline_or_the_pace_whichever_ends_first():
    display = StudyProgress("s", 10, 2, BUDGET, "maximize", console=_console()[0])
    assert display.time_left(now=display.started) == "-:--:-- left"  # no trial finished yet
    display.finished = 4  # two trials finished in 60 s: the six left take 180 s
    assert display.time_left(now=display.started + 60) == "~0:03:00 left"
    display.deadline = display.started + 90
    assert display.time_left(now=display.started + 60) == "0:00:30 left"
    display.finished = 10
    assert display.time_left() == "done"
    timed = StudyProgress("s", None, 0, BUDGET, "maximize", deadline=100.0)
    assert timed.time_left(now=40.0) == "0:01:00 left"


def test_the_running_trial_line_wraps_instead_of_being_cut():
    console, out = _console(width=50)
    display = StudyProgress("a-long-study-name", 20, 0, BUDGET, "maximize", console=console)
    recorder = display.wrap(MemoryRecorder(), 7, "val_accuracy")
    recorder.log_metrics({"rung/val_accuracy": 0.912345, "best_val_accuracy": 0.93}, step=3)
    console.print(display.progress.get_renderable())
    text = out.getvalue()
    assert "…" not in text
    flat = " ".join(text.split())
    assert "trial 7 at epoch 3/10: val_accuracy 0.91234 best 0.93" in flat, text


def test_plain_lines_say_how_each_trial_ended():
    console, out = _console(width=200, terminal=False)
    display = StudyProgress("s", 3, 0, BUDGET, "maximize", console=console, plain=True)
    with display:
        first = display.wrap(MemoryRecorder(), 0, "val_accuracy")
        first.log_metrics({"rung/val_accuracy": 0.5, "best_val_accuracy": 0.5}, step=10)
        first.end("FINISHED")
        second = display.wrap(MemoryRecorder(), 1, "val_accuracy")
        second.log_metrics({"rung/val_accuracy": 0.2}, step=2)
        second.end("KILLED", "pruned at step 2 (value 0.2)")
        third = display.wrap(MemoryRecorder(), 2, "val_accuracy")
        third.end("KILLED", "non-finite train_loss (nan) in epoch 1")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("trial 0 complete at epoch 10/10 (1/3 finished, best 0.5, ")
    assert lines[1].startswith("trial 1 pruned at epoch 2/10: value 0.2 (2/3 finished")
    assert lines[2].startswith("trial 2 pruned: non-finite train_loss (nan) in epoch 1 (3/3")
    assert lines[2].endswith("done)")


def test_the_spinner_shows_on_a_terminal_only():
    console, out = _console(terminal=True)
    with preparing("loading digits", console=console) as step:
        step("opening the study")
    assert "loading digits" in out.getvalue() or "opening the study" in out.getvalue()
    for quiet, terminal in ((True, True), (False, False)):
        console, out = _console(terminal=terminal)
        with preparing("loading digits", quiet=quiet, console=console) as step:
            step("opening the study")
        assert out.getvalue() == ""
