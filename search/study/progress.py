"""A rich progress display of a study: finished trials, the running trial's rung, the best."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tunelab.objectives.budget import TrialBudget
from tunelab.objectives.recorders import RunStatus, TrialRecorder
from tunelab.objectives.runner import RUNG_PREFIX


class StudyProgress:
    """One bar for the study's finished trials, one line for the running trial's rungs."""

    def __init__(
        self,
        study_name: str,
        target: int | None,
        done: int,
        budget: TrialBudget,
        direction: str,
        console: Console | None = None,
    ) -> None:
        self.direction = direction
        self.best: float | None = None
        self.budget = budget
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
        )
        self.trials = self.progress.add_task(study_name, total=target, completed=done, status="")

    def __enter__(self) -> StudyProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def wrap(self, inner: TrialRecorder, trial_number: int, metric: str) -> TrialRecorder:
        return _ProgressRecorder(self, inner, trial_number, metric)

    def update(self, text: str, finished: bool = False) -> None:
        best = "" if self.best is None else f"  best {self.best:.5g}"
        self.progress.update(self.trials, status=text + best, advance=1 if finished else 0)

    def show_finished(self, finished: int) -> None:
        self.progress.update(self.trials, completed=finished)

    def offer_best(self, value: float) -> None:
        if self.best is None or (
            value > self.best if self.direction == "maximize" else value < self.best
        ):
            self.best = value

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
        display.update(f"trial {number}: starting")

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.inner.log_params(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.inner.log_metrics(metrics, step)
        if f"best_{self.metric}" in metrics:
            self.display.offer_best(metrics[f"best_{self.metric}"])
        rung_metric = RUNG_PREFIX + self.metric
        if step is not None and rung_metric in metrics:
            self.display.update(
                f"trial {self.number} {self.display.where(step)}: "
                f"{self.metric} {metrics[rung_metric]:.5g}"
            )

    def log_artifacts(self, files: Mapping[str, bytes]) -> None:
        self.inner.log_artifacts(files)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.inner.set_tags(tags)

    def end(self, status: RunStatus, reason: str | None = None) -> None:
        self.inner.end(status, reason)
        label = {"FINISHED": "complete", "KILLED": "pruned", "FAILED": "failed"}[status]
        self.display.update(f"trial {self.number} {label}", finished=status != "FAILED")
