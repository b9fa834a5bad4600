"""What a running study shows: a rich display on a terminal, or plain lines with --quiet.

The display is one bar for the study's finished trials (with the time left: from the time
budget, or from the pace of the trials finished so far against the target), and below it the
running trial's line (its position in its budget, its last rung's objective, the best so far),
a line of its own so that it wraps instead of being cut at the terminal's width. Before the
first trial, `preparing` says what the slow start is doing (loading the data, checking the
task, timing the default configuration for a time budget) instead of a blank screen.

With `plain` (--quiet), the same information comes as one line per finished trial.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from tunelab.objectives.budget import TrialBudget
from tunelab.objectives.recorders import RunStatus, TrialRecorder
from tunelab.objectives.runner import RUNG_PREFIX

_AT_STEP = re.compile(r"^(?:pruned|paused) at step [\d,]+\s*")
"""The start of a scheduler's reason that repeats where the trial stood (said already)."""
STATUS_LABELS = {"FINISHED": "complete", "KILLED": "pruned", "FAILED": "failed"}
"""A trial's run status, as the display names its end."""


@contextlib.contextmanager
def preparing(
    text: str, quiet: bool = False, console: Console | None = None
) -> Iterator[Callable[[str], None]]:
    """A spinner saying what the study does before its first trial; yields the function that
    changes its text. Nothing where the output is not a terminal or with `quiet`: there the
    lines that follow say it, and a refused input stays one line."""
    console = console or Console(stderr=True)
    if quiet or not console.is_terminal:
        yield lambda _text: None
        return
    with console.status(text) as status:  # transient: gone when the display replaces it
        yield lambda new: status.update(new)


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class _Display(Progress):
    """rich's Progress with the running trial's line below the bars, wrapped, not cut."""

    def __init__(self, *columns: ProgressColumn, status: Callable[[], str], **kwargs: Any):
        self._status = status  # first: Progress renders once while it is made
        super().__init__(*columns, **kwargs)

    def get_renderables(self) -> Iterator[RenderableType]:
        line = self._status()
        table = self.make_tasks_table(self.tasks)
        yield Group(table, Text(line, overflow="fold")) if line else table


class _TimeLeft(ProgressColumn):
    """The study's time left, from its deadline or from its trials' pace."""

    def __init__(self, display: StudyProgress) -> None:
        super().__init__()
        self.display = display

    def render(self, task: Task) -> Text:
        return Text(self.display.time_left(), style="progress.remaining")


class _Trials(ProgressColumn):
    """'3/20 trials', or '3 trials' when only the time budget limits the study."""

    def render(self, task: Task) -> Text:
        done = int(task.completed)
        if task.total is None:
            return Text(f"{done} trial{'' if done == 1 else 's'}", style="progress.download")
        return Text(f"{done}/{int(task.total)} trials", style="progress.download")


class StudyProgress:
    """The study's finished trials, the running trial's position and the best so far: a rich
    display, or (`plain`) one line per finished trial on stderr."""

    def __init__(
        self,
        study_name: str,
        target: int | None,
        done: int,
        budget: TrialBudget,
        direction: str,
        console: Console | None = None,
        deadline: float | None = None,
        plain: bool = False,
    ) -> None:
        self.direction = direction
        self.best: float | None = None
        self.budget = budget
        self.target = target
        self.deadline = deadline
        self.plain = plain
        self.console = console or Console(stderr=True)
        self.started = time.time()
        self.done_at_start = done
        self.finished = done
        self.status = "starting the first trial"
        self.progress = _Display(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=24),
            _Trials(),
            TimeElapsedColumn(),
            _TimeLeft(self),
            console=self.console,
            status=self.status_line,
        )
        self.trials = self.progress.add_task(study_name, total=target, completed=done)

    def __enter__(self) -> StudyProgress:
        if not self.plain:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.plain:
            self.progress.stop()

    def wrap(self, inner: TrialRecorder, trial_number: int, metric: str) -> TrialRecorder:
        return _ProgressRecorder(self, inner, trial_number, metric)

    def status_line(self) -> str:
        best = "" if self.best is None else f"  best {self.best:.5g}"
        return f"{self.status}{best}"

    def update(self, text: str, finished: bool = False) -> None:
        """The running trial's line; `finished`: a trial has just ended (complete or
        pruned), one more towards the target."""
        self.status = text
        if finished:
            self.finished += 1
            self.progress.update(self.trials, advance=1)

    def ended(self, text: str, finished: bool) -> None:
        """A trial ended: `text` says how; `finished` (complete or pruned) counts it. Plain,
        this is the line that stands for the display."""
        self.update(text, finished=finished)
        if self.plain:
            self.say(text)

    def say(self, text: str) -> None:
        target = f"/{self.target}" if self.target is not None else ""
        best = "" if self.best is None else f", best {self.best:.5g}"
        self.console.print(
            f"{text} ({self.finished}{target} finished{best}, {self.time_left()})",
            highlight=False,
            soft_wrap=True,
        )

    def show_finished(self, finished: int) -> None:
        self.finished = finished
        self.progress.update(self.trials, completed=finished)

    def offer_best(self, value: float) -> None:
        if self.best is None or (
            value > self.best if self.direction == "maximize" else value < self.best
        ):
            self.best = value

    def time_left(self, now: float | None = None) -> str:
        """'2:13 left' by the time budget, '~2:13 left' at the pace of the trials finished
        in this run so far, the earlier of the two when the study has both."""
        now = time.time() if now is None else now
        estimates = []
        if self.target is not None:
            here = self.finished - self.done_at_start
            if self.finished >= self.target:
                return "done"
            if here > 0:
                pace = (now - self.started) / here
                estimates.append((pace * (self.target - self.finished), "~"))
        if self.deadline is not None:
            estimates.append((self.deadline - now, ""))
        if not estimates:
            return "-:--:-- left"  # no pace yet: known once a trial has finished
        seconds, approximate = min(estimates)
        return f"{approximate}{_clock(seconds)} left"

    def where(self, step: int) -> str:
        """A trial's position: its step against the budget's last, in the budget's unit."""
        if self.budget.unit == "epochs":
            return f"epoch {step}/{self.budget.max_step}"
        return f"{step:,}/{self.budget.max_step:,} images"


class _ProgressRecorder:
    """Passes everything on to the real recorder and shows each rung's objective."""

    def __init__(
        self, display: StudyProgress, inner: TrialRecorder, number: int, metric: str
    ) -> None:
        self.display, self.inner, self.number, self.metric = display, inner, number, metric
        self.step: int | None = None
        display.update(f"trial {number}: starting")

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.inner.log_params(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.inner.log_metrics(metrics, step)
        if f"best_{self.metric}" in metrics:
            self.display.offer_best(metrics[f"best_{self.metric}"])
        rung_metric = RUNG_PREFIX + self.metric
        if step is not None and rung_metric in metrics:
            self.step = step
            self.display.update(
                f"trial {self.number} at {self.display.where(step)}: "
                f"{self.metric} {metrics[rung_metric]:.5g}"
            )

    def log_artifacts(self, files: Mapping[str, bytes]) -> None:
        self.inner.log_artifacts(files)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.inner.set_tags(tags)

    def end(self, status: RunStatus, reason: str | None = None) -> None:
        self.inner.end(status, reason)
        text = f"trial {self.number} {STATUS_LABELS[status]}"
        if self.step is not None:
            text += f" at {self.display.where(self.step)}"
        detail = _AT_STEP.sub("", reason or "").strip().strip("()")
        if status != "FINISHED" and detail:
            text += f": {detail}"
        self.display.ended(text, finished=status != "FAILED")
